#pragma once
// Chebyshev expansions on [-1, 1] for the kernel polynomial method, apart from any solver:
// the Jackson kernel, sums over the Chebyshev nodes, the spectral measure of a set of moments,
// and the expansion coefficients of the grand potential (Weisse et al., Rev. Mod. Phys. 78, 275
// (2006), Sec. II). Energies map to x = (e - center)/half_width.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace spinforce {

constexpr double kPi = 3.14159265358979323846;

// Calls visit(m, T_m(x)) for m = 0..M-1 by the three-term recurrence (stable for |x| <= 1).
template <class Visit>
void for_each_chebyshev(double x, int64_t M, Visit visit) {
  double t0 = 1.0, t1 = x;
  visit(0, t0);
  if (M > 1) visit(1, t1);
  for (int64_t m = 2; m < M; ++m) {
    const double t2 = 2.0 * x * t1 - t0;
    visit(m, t2);
    t0 = t1;
    t1 = t2;
  }
}

// Jackson kernel g_m, m = 0..M-1.
std::vector<double> jackson_kernel(int64_t M);

// Quadrature nodes x_k = cos(pi (k + 1/2)/Mq), k = 0..Mq-1, with Mq = quadrature_points(M)
// for M moments.
double chebyshev_node(int64_t k, int64_t Mq);
int64_t quadrature_points(int64_t M);

// The spectral measure of the moments mu_m = Tr T_m(H~) on the nodes: Tr h(H) ~ sum_k w_k h(e_k)
// for any smooth h, with the Jackson kernel applied. Returns the node energies
// e_k = center + half_width x_k and the weights w_k.
struct SpectralMeasure {
  std::vector<double> energies, weights;
};
SpectralMeasure spectral_measure(const std::vector<double>& moments, const std::vector<double>& jackson,
                                 double center, double half_width);

// Jackson-damped Chebyshev coefficients c_m of the grand-potential density g(e) at (mu, kT):
// Omega ~ sum_m c_m mu_m.
std::vector<double> grand_potential_coefficients(int64_t M, const std::vector<double>& jackson, double center,
                                                 double half_width, double mu, double kT);

// Density of states rho(e) (states per unit energy, integrating to mu_0 = 2N) from moments
// mu_m = Tr T_m(H~), with the Jackson kernel, at energies e (any shape, float64 CPU) for the
// rescaling H~ = (H - center)/half_width. Zero outside the bounds.
at::Tensor kpm_density_of_states(const at::Tensor& moments, double center, double half_width,
                                 const at::Tensor& energies);

}  // namespace spinforce
