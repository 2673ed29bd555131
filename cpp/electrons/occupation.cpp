#include "electrons/occupation.hpp"

#include <algorithm>
#include <cmath>

namespace spinforce {

Occupation occupy(const at::Tensor& levels_in, const SDModel& model) {
  at::Tensor levels = levels_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t M = levels.numel();
  const double* e = levels.data_ptr<double>();
  const double kT = model.kT();
  Occupation occ;
  occ.f = at::zeros({M}, at::kDouble);
  double* f = occ.f.data_ptr<double>();

  occ.mu = model.fixed_mu() ? *model.mu() : solve_mu(e, nullptr, M, model.num_electrons(), kT);
  if (!model.fixed_mu() && kT == 0.0) {
    // Fill from the bottom; share the Fermi shell equally.
    const double Ne = model.num_electrons();
    const double scale = 1.0 + std::max(std::abs(e[0]), std::abs(e[M - 1]));
    const int64_t last = std::min<int64_t>(M - 1, static_cast<int64_t>(std::ceil(Ne - 1e-12)) - 1);
    int64_t lo = last, hi = last + 1;
    while (lo > 0 && e[last] - e[lo - 1] <= kDegeneracyTol * scale) --lo;
    while (hi < M && e[hi] - e[last] <= kDegeneracyTol * scale) ++hi;
    const double shared = (Ne - static_cast<double>(lo)) / static_cast<double>(hi - lo);
    for (int64_t m = 0; m < lo; ++m) f[m] = 1.0;
    for (int64_t m = lo; m < hi; ++m) f[m] = shared;
    occ.num_electrons = Ne;
    for (int64_t m = 0; m < M; ++m) occ.energy += f[m] * e[m];
    return occ;
  }
  double omega = 0.0, n = 0.0;
  for (int64_t m = 0; m < M; ++m) {
    f[m] = fermi(e[m], occ.mu, kT);
    n += f[m];
    omega += grand_potential_density(e[m], occ.mu, kT);
  }
  occ.num_electrons = n;
  occ.energy = ensemble_energy(model, omega, occ.mu);
  return occ;
}

}  // namespace spinforce
