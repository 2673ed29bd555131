#include "electrons/occupation.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"

namespace spinforce {

double fermi(double e, double mu, double kT) {
  if (kT == 0.0) return e < mu ? 1.0 : (e > mu ? 0.0 : 0.5);
  const double x = (e - mu) / kT;
  return x > 0 ? std::exp(-x) / (1.0 + std::exp(-x)) : 1.0 / (1.0 + std::exp(x));
}

double grand_potential_density(double e, double mu, double kT) {
  if (kT == 0.0) return std::min(e - mu, 0.0);
  const double x = (e - mu) / kT;
  // -kT softplus(-x), written to avoid overflow for either sign of x.
  return -kT * (std::max(-x, 0.0) + std::log1p(std::exp(-std::abs(x))));
}

namespace {

double count_at(const double* e, int64_t M, double mu, double kT) {
  double n = 0;
  for (int64_t m = 0; m < M; ++m) n += fermi(e[m], mu, kT);
  return n;
}

// mu with sum_m f(e_m - mu) = N_e at kT > 0: bisection, monotone and robust.
double solve_mu(const double* e, int64_t M, double Ne, double kT) {
  double lo = e[0] - 40 * kT - 1.0, hi = e[M - 1] + 40 * kT + 1.0;
  for (int it = 0; it < 200 && hi - lo > 1e-15 * (1.0 + std::abs(lo) + std::abs(hi)); ++it) {
    const double mid = 0.5 * (lo + hi);
    (count_at(e, M, mid, kT) < Ne ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

Occupation occupy(const at::Tensor& levels_in, const SDModel& model) {
  at::Tensor levels = levels_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t M = levels.numel();
  const double* e = levels.data_ptr<double>();
  const double kT = model.kT();
  Occupation occ;
  occ.f = at::zeros({M}, at::kDouble);
  double* f = occ.f.data_ptr<double>();

  if (model.fixed_mu()) {
    occ.mu = *model.mu();
  } else if (kT > 0.0) {
    occ.mu = solve_mu(e, M, model.num_electrons(), kT);
  } else {
    // kT = 0, fixed count: fill from the bottom; share the Fermi shell equally.
    const double Ne = model.num_electrons();
    const double scale = 1.0 + std::max(std::abs(e[0]), std::abs(e[M - 1]));
    const int64_t last = std::min<int64_t>(M - 1, static_cast<int64_t>(std::ceil(Ne - 1e-12)) - 1);
    int64_t lo = last, hi = last + 1;
    while (lo > 0 && e[last] - e[lo - 1] <= kDegeneracyTol * scale) --lo;
    while (hi < M && e[hi] - e[last] <= kDegeneracyTol * scale) ++hi;
    const double shared = (Ne - static_cast<double>(lo)) / static_cast<double>(hi - lo);
    for (int64_t m = 0; m < lo; ++m) f[m] = 1.0;
    for (int64_t m = lo; m < hi; ++m) f[m] = shared;
    occ.mu = (shared >= 1.0 - 1e-12 && hi < M) ? 0.5 * (e[last] + e[hi]) : e[last];
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
  occ.energy = model.fixed_mu() ? omega : omega + occ.mu * model.num_electrons();
  return occ;
}

}  // namespace spinforce
