#pragma once
// The s-d (Kondo-lattice) model with classical spins:
//   H = -sum_{ij,s} t_ij c+_is c_js - J sum_i S_i . (c+_i sigma c_i)
// Orbital index 2*i + s (s = 0 up, 1 down), so each site's 2x2 block is contiguous.
#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <vector>

#include "lattice/lattice.hpp"

namespace spinforce {

struct HoppingShell {
  int shell = 0;           // 1 nearest, 2 next-nearest, 3 third
  double amplitude = 0.0;  // t_k; the matrix element is -t_k
  std::vector<Offset> offsets;
  at::Tensor neighbors;    // (N, m) int64
};

class SDModel {
 public:
  SDModel(std::shared_ptr<const Lattice> lattice, double t, double J, std::optional<double> mu,
          std::optional<double> filling, double kT, double t2, double t3);

  const Lattice& lattice() const { return *lattice_; }
  std::shared_ptr<const Lattice> lattice_ptr() const { return lattice_; }
  int64_t num_sites() const { return lattice_->num_sites(); }
  double t() const { return t_; }
  double t2() const { return t2_; }
  double t3() const { return t3_; }
  double J() const { return J_; }
  double kT() const { return kT_; }
  bool fixed_mu() const { return mu_.has_value(); }
  std::optional<double> mu() const { return mu_; }
  std::optional<double> filling() const { return filling_; }
  // Electron count at fixed filling: f * 2N.
  double num_electrons() const;
  const std::vector<HoppingShell>& hopping_shells() const { return shells_; }
  // Largest |eigenvalue| bound by Gershgorin: sum_k |t_k| m_k + |J|.
  double gershgorin_bound() const;

 private:
  std::shared_ptr<const Lattice> lattice_;
  double t_, t2_, t3_, J_, kT_;
  std::optional<double> mu_, filling_;
  std::vector<HoppingShell> shells_;
};

}  // namespace spinforce
