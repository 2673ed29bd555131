#include "providers/heisenberg.hpp"

#include <omp.h>

#include <cmath>
#include <vector>

#include "common/errors.hpp"

namespace spinforce {

Heisenberg::Heisenberg(std::shared_ptr<const Lattice> lattice, double J1, double J2, std::array<double, 3> field,
                       double anisotropy, std::array<double, 3> axis)
    : lattice_(std::move(lattice)), J1_(J1), J2_(J2), K_(anisotropy), h_(field) {
  require(lattice_ != nullptr, "lattice must be a spinforce.Lattice, got None");
  require(std::isfinite(J1), "J1 must be finite, got ", J1);
  require(std::isfinite(J2), "J2 must be finite, got ", J2);
  require(std::isfinite(anisotropy), "anisotropy must be finite, got ", anisotropy);
  for (double h : field) require(std::isfinite(h), "field must be a finite 3-vector");
  const double norm = std::sqrt(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]);
  require(std::isfinite(norm) && norm > 0.0, "axis must be a finite non-zero 3-vector");
  for (int a = 0; a < 3; ++a) n_[a] = axis[a] / norm;
  // Tables only for couplings in use, so that a single site (J1 = J2 = 0) is a valid model.
  if (J1 != 0.0) nn_ = lattice_->neighbor_table(lattice_->shell_offsets(1));
  if (J2 != 0.0) nnn_ = lattice_->neighbor_table(lattice_->shell_offsets(2));
}

FieldResult Heisenberg::compute(const at::Tensor& spins) {
  if (!spins.device().is_cpu()) return compute_tensor(spins);
  const int64_t N = num_sites();
  const at::Tensor s = spins.contiguous();
  at::Tensor fields = at::empty({N, 3}, s.options());
  const double* S = s.data_ptr<double>();
  double* H = fields.data_ptr<double>();
  const int64_t* nn = nn_.defined() ? nn_.data_ptr<int64_t>() : nullptr;
  const int64_t* nnn = nnn_.defined() ? nnn_.data_ptr<int64_t>() : nullptr;
  const int64_t m1 = nn_.defined() ? nn_.size(1) : 0, m2 = nnn_.defined() ? nnn_.size(1) : 0;
  const double J1 = J1_, J2 = J2_, K = K_;
  const std::array<double, 3> h = h_, n = n_;
  // Per-thread partial energies summed in thread order: deterministic for a fixed thread count.
  std::vector<double> partial(omp_get_max_threads(), 0.0);
#pragma omp parallel
  {
    double e = 0.0;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      double x[3] = {0.0, 0.0, 0.0};  // exchange part of H_i
      for (int64_t a = 0; a < m1; ++a)
        for (int c = 0; c < 3; ++c) x[c] -= J1 * S[3 * nn[i * m1 + a] + c];
      for (int64_t a = 0; a < m2; ++a)
        for (int c = 0; c < 3; ++c) x[c] -= J2 * S[3 * nnn[i * m2 + a] + c];
      const double* Si = S + 3 * i;
      const double sn = Si[0] * n[0] + Si[1] * n[1] + Si[2] * n[2];
      // Bonds are seen from both ends: half the exchange energy per site.
      e += -0.5 * (Si[0] * x[0] + Si[1] * x[1] + Si[2] * x[2]) - (Si[0] * h[0] + Si[1] * h[1] + Si[2] * h[2]) -
           K * sn * sn;
      for (int c = 0; c < 3; ++c) H[3 * i + c] = x[c] + h[c] + 2.0 * K * sn * n[c];
    }
    partial[omp_get_thread_num()] = e;
  }
  FieldResult out;
  for (double e : partial) out.energy += e;
  out.fields = fields;
  return out;
}

FieldResult Heisenberg::compute_tensor(const at::Tensor& spins) {
  const at::Tensor s = spins.to(at::kDouble);
  const auto opts = s.options();
  // Tables and vectors are copied to the spins' device once and kept there.
  if (!h_device_.defined() || h_device_.device() != s.device()) {
    if (nn_.defined()) nn_device_ = nn_.to(s.device()).reshape(-1);
    if (nnn_.defined()) nnn_device_ = nnn_.to(s.device()).reshape(-1);
    h_device_ = at::tensor(std::vector<double>(h_.begin(), h_.end()), opts.device(at::kCPU)).to(s.device());
    n_device_ = at::tensor(std::vector<double>(n_.begin(), n_.end()), opts.device(at::kCPU)).to(s.device());
  }
  at::Tensor exchange = at::zeros_like(s);
  if (nn_.defined()) exchange -= J1_ * s.index_select(0, nn_device_).view({num_sites(), -1, 3}).sum(1);
  if (nnn_.defined()) exchange -= J2_ * s.index_select(0, nnn_device_).view({num_sites(), -1, 3}).sum(1);
  const at::Tensor sn = at::matmul(s, n_device_);  // (N,)
  const at::Tensor energy = -0.5 * (s * exchange).sum() - at::matmul(s, h_device_).sum() - K_ * (sn * sn).sum();
  FieldResult out;
  out.fields = exchange + h_device_ + 2.0 * K_ * sn.unsqueeze(1) * n_device_;
  if (s.is_cpu()) {
    out.energy = energy.item<double>();
  } else {
    out.energy_tensor = energy;
  }
  return out;
}

}  // namespace spinforce
