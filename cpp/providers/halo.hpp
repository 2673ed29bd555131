#pragma once
// One slab of a lattice split over processes. The inner provider is built on the slab with its
// halo (a lattice of its own); exchange(slab spins) fills the halo from the neighbouring slabs
// (torch.distributed, from Python) and returns the spins of that lattice, and the slab's fields
// are the inner provider's fields at the slab's sites. The halo is wide enough that no field of
// the slab sees the inner lattice's own periodic wrap (spinforce.distributed chooses it), so
// every integrator stage gets exactly the fields of the undivided lattice.
#include <ATen/ATen.h>

#include <functional>
#include <memory>

#include "providers/field_provider.hpp"

namespace spinforce {

class HaloProvider : public FieldProvider {
 public:
  // exchange(spins (num_sites, 3)) -> (inner->num_sites(), 3), the slab at rows [first, first + num_sites).
  using Exchange = std::function<at::Tensor(const at::Tensor&)>;

  HaloProvider(std::shared_ptr<FieldProvider> inner, int64_t num_sites, int64_t first, Exchange exchange);

  int64_t num_sites() const override { return num_sites_; }
  std::string name() const override { return inner_->name(); }
  // Fields (and a committee's uncertainty, an electron model's density) of the slab's sites.
  // The energy is that of the whole padded lattice, not the slab's share (for frames the driver
  // sums the site energies of the slab's own sites).
  FieldResult compute(const at::Tensor& spins) override;

  std::shared_ptr<FieldProvider> inner() const { return inner_; }
  int64_t first() const { return first_; }

 private:
  std::shared_ptr<FieldProvider> inner_;
  int64_t num_sites_, first_;
  Exchange exchange_;
};

}  // namespace spinforce
