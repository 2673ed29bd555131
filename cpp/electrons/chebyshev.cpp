#include "electrons/chebyshev.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"
#include "common/limits.hpp"
#include "electrons/fermi_dirac.hpp"

namespace spinforce {
namespace {

// Sums over the Chebyshev nodes x~_k = cos(pi (k + 1/2)/Mq):
// analysis out_m = sum_k f_k T_m(x~_k); synthesis out_k = sum_m f_m T_m(x~_k).
std::vector<double> chebyshev_analysis(const std::vector<double>& f, int64_t M) {
  const int64_t Mq = static_cast<int64_t>(f.size());
  std::vector<double> out(M, 0.0);
  for (int64_t k = 0; k < Mq; ++k) {
    poll_interrupt();  // O(Mq M): minutes for a million moments
    for_each_chebyshev(chebyshev_node(k, Mq), M, [&](int64_t m, double t) { out[m] += f[k] * t; });
  }
  return out;
}

std::vector<double> chebyshev_synthesis(const std::vector<double>& f, int64_t Mq) {
  const int64_t M = static_cast<int64_t>(f.size());
  std::vector<double> out(Mq, 0.0);
  for (int64_t k = 0; k < Mq; ++k) {
    poll_interrupt();
    for_each_chebyshev(chebyshev_node(k, Mq), M, [&](int64_t m, double t) { out[k] += f[m] * t; });
  }
  return out;
}

}  // namespace

std::vector<double> jackson_kernel(int64_t M) {
  std::vector<double> g(M);
  const double q = kPi / static_cast<double>(M + 1);
  for (int64_t m = 0; m < M; ++m)
    g[m] = ((M + 1 - m) * std::cos(q * m) + std::sin(q * m) * std::cos(q) / std::sin(q)) / static_cast<double>(M + 1);
  return g;
}

double chebyshev_node(int64_t k, int64_t Mq) { return std::cos(kPi * (k + 0.5) / Mq); }

int64_t quadrature_points(int64_t M) { return std::max<int64_t>(4 * M, 1024); }

SpectralMeasure spectral_measure(const std::vector<double>& moments, const std::vector<double>& jackson,
                                 double center, double half_width) {
  const int64_t M = static_cast<int64_t>(moments.size()), Mq = quadrature_points(M);
  std::vector<double> damped(M);
  for (int64_t m = 0; m < M; ++m) damped[m] = (m == 0 ? 1.0 : 2.0) * jackson[m] * moments[m] / Mq;
  SpectralMeasure out;
  out.weights = chebyshev_synthesis(damped, Mq);
  out.energies.resize(Mq);
  for (int64_t k = 0; k < Mq; ++k) out.energies[k] = center + half_width * chebyshev_node(k, Mq);
  return out;
}

std::vector<double> grand_potential_coefficients(int64_t M, const std::vector<double>& jackson, double center,
                                                 double half_width, double mu, double kT) {
  const int64_t Mq = quadrature_points(M);
  std::vector<double> g(Mq);
  for (int64_t k = 0; k < Mq; ++k)
    g[k] = grand_potential_density(center + half_width * chebyshev_node(k, Mq), mu, kT);
  std::vector<double> c = chebyshev_analysis(g, M);
  for (int64_t m = 0; m < M; ++m) c[m] *= (m == 0 ? 1.0 : 2.0) * jackson[m] / Mq;
  return c;
}

at::Tensor kpm_density_of_states(const at::Tensor& moments_in, double center, double half_width,
                                 const at::Tensor& energies_in) {
  require(moments_in.dim() == 1 && moments_in.numel() >= 2, "moments must be a 1-d array of at least 2 moments");
  require(std::isfinite(half_width) && half_width > 0, "half_width must be > 0, got ", half_width);
  at::Tensor moments = moments_in.to(at::kCPU, at::kDouble).contiguous();
  at::Tensor energies = energies_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t M = moments.numel();
  const std::vector<double> g = jackson_kernel(M);
  const double* mu = moments.data_ptr<double>();
  at::Tensor out = at::zeros_like(energies);
  const double* e = energies.data_ptr<double>();
  double* rho = out.data_ptr<double>();
  for (int64_t n = 0; n < energies.numel(); ++n) {
    const double x = (e[n] - center) / half_width;
    if (!(std::abs(x) < 1.0)) continue;
    double sum = 0.0;
    for_each_chebyshev(x, M, [&](int64_t m, double t) { sum += (m == 0 ? 1.0 : 2.0) * g[m] * mu[m] * t; });
    rho[n] = sum / (kPi * half_width * std::sqrt(1.0 - x * x));
  }
  return out;
}

}  // namespace spinforce
