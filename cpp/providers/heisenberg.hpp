#pragma once
// Classical Heisenberg model with Zeeman field and uniaxial anisotropy on a periodic lattice:
//   E = J1 sum_<ij> S_i.S_j + J2 sum_<<ij>> S_i.S_j - h . sum_i S_i - K sum_i (S_i.n)^2,
// each bond counted once (<ij> nearest, <<ij>> next-nearest neighbour shell). J > 0 is
// antiferromagnetic, K > 0 an easy axis n. Fields H_i = -dE/dS_i =
//   -J1 sum_{j nn i} S_j - J2 sum_{j nnn i} S_j + h + 2K (S_i.n) n.
// A cheap, exactly known provider for testing the integrators and as a baseline.
#include <ATen/ATen.h>

#include <array>
#include <memory>

#include "lattice/lattice.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

class Heisenberg : public FieldProvider {
 public:
  Heisenberg(std::shared_ptr<const Lattice> lattice, double J1, double J2, std::array<double, 3> field,
             double anisotropy, std::array<double, 3> axis);

  int64_t num_sites() const override { return lattice_->num_sites(); }
  std::string name() const override { return "heisenberg"; }
  std::string title() const override { return "Heisenberg"; }
  // CPU: one fused OpenMP loop; other devices: compute_tensor.
  FieldResult compute(const at::Tensor& spins) override;
  // The same model written with tensor ops, on any device (the GPU path, and a reference). On a
  // GPU the energy stays on the device (FieldResult::energy_tensor): no sync per evaluation.
  FieldResult compute_tensor(const at::Tensor& spins);

  std::shared_ptr<const Lattice> lattice_ptr() const { return lattice_; }
  double J1() const { return J1_; }
  double J2() const { return J2_; }
  const std::array<double, 3>& field() const { return h_; }
  double anisotropy() const { return K_; }
  const std::array<double, 3>& axis() const { return n_; }

 private:
  std::shared_ptr<const Lattice> lattice_;
  double J1_, J2_, K_;
  std::array<double, 3> h_, n_;
  at::Tensor nn_, nnn_;  // (N, m) neighbour tables; undefined when the coupling is zero
  // Flattened tables, field h and axis n on the device of the last tensor call: an evaluation
  // on a GPU then makes no host-device copies.
  at::Tensor nn_device_, nnn_device_, h_device_, n_device_;
};

}  // namespace spinforce
