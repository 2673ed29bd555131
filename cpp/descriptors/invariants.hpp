#pragma once
// Per-site arithmetic of the descriptor invariants (power spectrum, phases, bispectrum) from
// IR coefficients c (E entries, identity-IR bond coefficients excluded) and block-averaged
// reference vectors rho (R entries). Shared by the OpenMP loops (invariants_cpu.cpp) and the
// CUDA kernels (cuda/descriptors.cu). The index tables are described in InvariantPlan; the
// pure-torch form of the same formulas is Descriptor.invariants in python/spinforce/descriptors.
// Row arguments are pointers (CPU, row-major) or Strided rows (CUDA, feature-major).
#include <cmath>
#include <cstdint>

#include "common/hd.hpp"

namespace spinforce {
namespace descriptors {

template <class T>
SPINFORCE_HD T hd_sqrt(T x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);
#else
  return std::sqrt(x);
#endif
}

struct InvariantPlan {
  int64_t E, R, G, P, K, T, Q;  // entries of c, of rho, norms, power(=phase) features, kappa, kappa terms, bis entries
  int64_t B;                    // bispectrum features
  const int64_t* norm_of;       // (R) norm group of each rho entry
  const int64_t* entry_of;      // (E) power/phase feature of each c entry
  const int64_t* phase_r;       // (E) rho entry paired with each c entry
  const int64_t* phase_norm;    // (P) norm group of each phase feature
  const int64_t* kappa_r1;      // (T) kappa terms: coef * rho[r1] * rho[r2] / (norm[n1] norm[n2]) -> kappa[of]
  const int64_t* kappa_r2;
  const int64_t* kappa_n1;
  const int64_t* kappa_n2;
  const int64_t* kappa_of;
  const int64_t* bis_c;         // (Q) bispectrum entries: c[bis_c] * kappa[bis_k] -> bispectrum[bis_of]
  const int64_t* bis_k;
  const int64_t* bis_of;
  SPINFORCE_HD int64_t num_outputs() const { return 2 * P + B; }
  SPINFORCE_HD int64_t num_scratch() const { return 2 * (G + K); }
};

// norm[g] = sqrt(floor^2 + sum rho^2) and kappa for one site.
template <class T, class Coef, class Rho, class Row>
SPINFORCE_HD void site_norms_kappa(const InvariantPlan& p, const Coef* coef, T floor_sq, Rho rho, Row norm, Row kappa) {
  for (int64_t g = 0; g < p.G; ++g) norm[g] = floor_sq;
  for (int64_t r = 0; r < p.R; ++r) norm[p.norm_of[r]] += rho[r] * rho[r];
  for (int64_t g = 0; g < p.G; ++g) norm[g] = hd_sqrt(norm[g]);
  for (int64_t k = 0; k < p.K; ++k) kappa[k] = T(0);
  for (int64_t t = 0; t < p.T; ++t)
    kappa[p.kappa_of[t]] +=
        T(coef[t]) * rho[p.kappa_r1[t]] * rho[p.kappa_r2[t]] / (norm[p.kappa_n1[t]] * norm[p.kappa_n2[t]]);
}

// out (2P + B): power spectrum, phases, bispectrum. scratch: num_scratch() values.
template <class T, class Coef, class In, class Out>
SPINFORCE_HD void site_invariants(const InvariantPlan& p, const Coef* coef, T floor_sq, In c, In rho, Out out,
                                  Out scratch) {
  const Out norm = scratch;
  const Out kappa = scratch + p.G;
  site_norms_kappa(p, coef, floor_sq, rho, norm, kappa);
  for (int64_t i = 0; i < p.num_outputs(); ++i) out[i] = T(0);
  for (int64_t e = 0; e < p.E; ++e) {
    const int64_t f = p.entry_of[e];
    out[f] += c[e] * c[e];
    out[p.P + f] += c[e] * rho[p.phase_r[e]];
  }
  for (int64_t f = 0; f < p.P; ++f) out[p.P + f] /= norm[p.phase_norm[f]];
  for (int64_t q = 0; q < p.Q; ++q) out[2 * p.P + p.bis_of[q]] += c[p.bis_c[q]] * kappa[p.bis_k[q]];
}

// Vector-Jacobian product: grad (2P + B) -> grad_c (E), grad_rho (R), both overwritten.
template <class T, class Coef, class In, class Out>
SPINFORCE_HD void site_invariants_vjp(const InvariantPlan& p, const Coef* coef, T floor_sq, In c, In rho, In grad,
                                      Out grad_c, Out grad_rho, Out scratch) {
  const Out norm = scratch;
  const Out kappa = scratch + p.G;
  const Out grad_norm = kappa + p.K;
  const Out grad_kappa = grad_norm + p.G;
  site_norms_kappa(p, coef, floor_sq, rho, norm, kappa);
  for (int64_t g = 0; g < p.G; ++g) grad_norm[g] = T(0);
  for (int64_t k = 0; k < p.K; ++k) grad_kappa[k] = T(0);
  for (int64_t r = 0; r < p.R; ++r) grad_rho[r] = T(0);
  const In g_power = grad;
  const In g_phase = grad + p.P;
  const In g_bis = grad + 2 * p.P;
  for (int64_t e = 0; e < p.E; ++e) {
    const int64_t f = p.entry_of[e], r = p.phase_r[e], g = p.phase_norm[f];
    const T gp = g_phase[f] / norm[g];
    grad_c[e] = T(2) * c[e] * g_power[f] + gp * rho[r];
    grad_rho[r] += gp * c[e];
    grad_norm[g] -= gp * c[e] * rho[r] / norm[g];
  }
  for (int64_t q = 0; q < p.Q; ++q) {
    const T gb = g_bis[p.bis_of[q]];
    grad_c[p.bis_c[q]] += gb * kappa[p.bis_k[q]];
    grad_kappa[p.bis_k[q]] += gb * c[p.bis_c[q]];
  }
  for (int64_t t = 0; t < p.T; ++t) {
    const int64_t r1 = p.kappa_r1[t], r2 = p.kappa_r2[t], n1 = p.kappa_n1[t], n2 = p.kappa_n2[t];
    const T w = grad_kappa[p.kappa_of[t]] * T(coef[t]) / (norm[n1] * norm[n2]);
    const T value = w * rho[r1] * rho[r2];
    grad_rho[r1] += w * rho[r2];
    grad_rho[r2] += w * rho[r1];
    grad_norm[n1] -= value / norm[n1];
    grad_norm[n2] -= value / norm[n2];
  }
  for (int64_t r = 0; r < p.R; ++r) {
    const int64_t g = p.norm_of[r];
    grad_rho[r] += grad_norm[g] * rho[r] / norm[g];
  }
}

}  // namespace descriptors
}  // namespace spinforce
