#include "providers/halo.hpp"

#include "common/errors.hpp"

namespace spinforce {

HaloProvider::HaloProvider(std::shared_ptr<FieldProvider> inner, int64_t num_sites, int64_t first, Exchange exchange)
    : inner_(std::move(inner)), num_sites_(num_sites), first_(first), exchange_(std::move(exchange)) {
  require(inner_ != nullptr, "provider must be a field provider, got None");
  require(exchange_ != nullptr, "exchange must be a function of the slab's spins");
  require(num_sites >= 1, "num_sites must be >= 1, got ", num_sites);
  require(first >= 0 && first + num_sites <= inner_->num_sites(), "the slab (sites ", first, " to ",
          first + num_sites, ") must lie within the ", inner_->num_sites(), " sites of the provider's lattice");
}

FieldResult HaloProvider::compute(const at::Tensor& spins) {
  const at::Tensor padded = exchange_(spins);
  require(padded.defined() && padded.dim() == 2 && padded.size(0) == inner_->num_sites() && padded.size(1) == 3,
          "exchange must return spins of shape (", inner_->num_sites(), ", 3), got ",
          padded.defined() ? padded.sizes() : at::IntArrayRef{});
  FieldResult r = inner_->compute(padded.to(spins.device(), at::kDouble).contiguous());
  const auto slab = [this](const at::Tensor& t) {
    return t.defined() ? t.narrow(0, first_, num_sites_).contiguous() : t;
  };
  r.fields = slab(r.fields);
  r.uncertainty = slab(r.uncertainty);
  r.density = slab(r.density);
  r.eigenvalues = at::Tensor();
  return r;
}

}  // namespace spinforce
