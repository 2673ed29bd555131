#include "electrons/fermi_dirac.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/errors.hpp"
#include "common/limits.hpp"
#include "electrons/sd_model.hpp"

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

double weight(const double* w, int64_t m) { return w == nullptr ? 1.0 : w[m]; }

double count_at(const double* e, const double* w, int64_t M, double mu, double kT) {
  double n = 0.0;
  for (int64_t m = 0; m < M; ++m) n += weight(w, m) * fermi(e[m], mu, kT);
  return n;
}

double staircase_mu(const double* e, const double* w, int64_t M, double target, double total) {
  std::vector<int64_t> order(M);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return e[a] < e[b]; });
  const double tol = 1e-9 * std::max(1.0, total);
  double largest = 0.0;
  for (int64_t m = 0; m < M; ++m) largest = std::max(largest, std::abs(e[m]));
  const double degenerate = kDegeneracyTol * (1.0 + largest);
  double cum = 0.0;
  int64_t k = 0;  // first level (in energy order) whose cumulative weight reaches the target
  for (; k < M; ++k) {
    cum += weight(w, order[k]);
    if (cum >= target - tol) break;
  }
  k = std::min(k, M - 1);
  const double ek = e[order[k]];
  if (std::abs(cum - target) <= tol && k + 1 < M && e[order[k + 1]] - ek > degenerate)
    return 0.5 * (ek + e[order[k + 1]]);
  return ek;
}

}  // namespace

double solve_mu(const double* e, const double* w, int64_t M, double target, double kT) {
  require(M >= 1, "solve_mu needs at least one level");
  require(std::isfinite(kT) && kT >= 0.0, "kT (electron temperature) must be >= 0, got ", kT);
  double total = 0.0, lo = e[0], hi = e[0];
  for (int64_t m = 0; m < M; ++m) {
    total += weight(w, m);
    lo = std::min(lo, e[m]);
    hi = std::max(hi, e[m]);
  }
  require(std::isfinite(target) && target > 0.0 && target < total, "the wanted electron count ", target,
          " must lie in (0, ", total, "), the number of states");
  if (kT == 0.0) return staircase_mu(e, w, M, target, total);
  lo -= 40.0 * kT + 1.0;
  hi += 40.0 * kT + 1.0;
  for (int it = 0; it < 200 && hi - lo > 1e-15 * (1.0 + std::abs(lo) + std::abs(hi)); ++it) {
    poll_interrupt();
    const double mid = 0.5 * (lo + hi);
    (count_at(e, w, M, mid, kT) < target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double ensemble_energy(const SDModel& model, double grand_potential, double mu) {
  return model.fixed_mu() ? grand_potential : grand_potential + mu * model.num_electrons();
}

}  // namespace spinforce
