#pragma once
// Per-site arithmetic of the descriptor invariants (power spectrum, phases, bispectrum) from
// IR coefficients c (identity-IR bond coefficients excluded) and block-averaged reference
// vectors rho. Shared by the OpenMP loops (invariants_cpu.cpp) and the CUDA kernels
// (cuda/descriptors.cu). The index tables are described in InvariantPlan; the
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

// Sizes and index tables of the invariants of one site. rho holds the reference vectors of every
// (family, irrep), each with one smooth norm; kappa the coupled references of the bispectrum.
struct InvariantPlan {
  int64_t num_c_entries;            // coefficients c of a site (identity-IR bond copies excluded)
  int64_t num_rho_entries;          // entries of the reference vectors rho
  int64_t num_norm_groups;          // reference vectors: rho entries sharing one norm
  int64_t num_power_features;       // power-spectrum features (as many phase features)
  int64_t num_kappa_entries;        // entries of kappa
  int64_t num_kappa_terms;          // terms summed into kappa
  int64_t num_bispectrum_terms;     // terms summed into the bispectrum features
  int64_t num_bispectrum_features;  // bispectrum features
  const int64_t* norm_of;     // (num_rho_entries) norm group of each rho entry
  const int64_t* entry_of;    // (num_c_entries) power/phase feature of each c entry
  const int64_t* phase_r;     // (num_c_entries) rho entry paired with each c entry
  const int64_t* phase_norm;  // (num_power_features) norm group of each phase feature
  const int64_t* kappa_r1;    // (num_kappa_terms): coef * rho[r1] * rho[r2] / (norm[n1] norm[n2]) -> kappa[of]
  const int64_t* kappa_r2;
  const int64_t* kappa_n1;
  const int64_t* kappa_n2;
  const int64_t* kappa_of;
  const int64_t* bis_c;       // (num_bispectrum_terms): c[bis_c] * kappa[bis_k] -> bispectrum[bis_of]
  const int64_t* bis_k;
  const int64_t* bis_of;
  SPINFORCE_HD int64_t num_outputs() const { return 2 * num_power_features + num_bispectrum_features; }
  SPINFORCE_HD int64_t num_scratch() const { return 2 * (num_norm_groups + num_kappa_entries); }
};

// norm[g] = sqrt(floor^2 + sum rho^2) and kappa for one site.
template <class T, class Coef, class Rho, class Row>
SPINFORCE_HD void site_norms_kappa(const InvariantPlan& p, const Coef* coef, T floor_sq, Rho rho, Row norm, Row kappa) {
  for (int64_t g = 0; g < p.num_norm_groups; ++g) norm[g] = floor_sq;
  for (int64_t r = 0; r < p.num_rho_entries; ++r) norm[p.norm_of[r]] += rho[r] * rho[r];
  for (int64_t g = 0; g < p.num_norm_groups; ++g) norm[g] = hd_sqrt(norm[g]);
  for (int64_t k = 0; k < p.num_kappa_entries; ++k) kappa[k] = T(0);
  for (int64_t t = 0; t < p.num_kappa_terms; ++t)
    kappa[p.kappa_of[t]] +=
        T(coef[t]) * rho[p.kappa_r1[t]] * rho[p.kappa_r2[t]] / (norm[p.kappa_n1[t]] * norm[p.kappa_n2[t]]);
}

// out (num_outputs()): power spectrum, phases, bispectrum. scratch: num_scratch() values.
template <class T, class Coef, class In, class Out>
SPINFORCE_HD void site_invariants(const InvariantPlan& p, const Coef* coef, T floor_sq, In c, In rho, Out out,
                                  Out scratch) {
  const Out norm = scratch;
  const Out kappa = scratch + p.num_norm_groups;
  site_norms_kappa(p, coef, floor_sq, rho, norm, kappa);
  for (int64_t i = 0; i < p.num_outputs(); ++i) out[i] = T(0);
  for (int64_t e = 0; e < p.num_c_entries; ++e) {
    const int64_t f = p.entry_of[e];
    out[f] += c[e] * c[e];
    out[p.num_power_features + f] += c[e] * rho[p.phase_r[e]];
  }
  for (int64_t f = 0; f < p.num_power_features; ++f) out[p.num_power_features + f] /= norm[p.phase_norm[f]];
  for (int64_t q = 0; q < p.num_bispectrum_terms; ++q)
    out[2 * p.num_power_features + p.bis_of[q]] += c[p.bis_c[q]] * kappa[p.bis_k[q]];
}

// Vector-Jacobian product: grad (num_outputs()) -> grad_c (num_c_entries), grad_rho
// (num_rho_entries), both overwritten.
template <class T, class Coef, class In, class Out>
SPINFORCE_HD void site_invariants_vjp(const InvariantPlan& p, const Coef* coef, T floor_sq, In c, In rho, In grad,
                                      Out grad_c, Out grad_rho, Out scratch) {
  const Out norm = scratch;
  const Out kappa = scratch + p.num_norm_groups;
  const Out grad_norm = kappa + p.num_kappa_entries;
  const Out grad_kappa = grad_norm + p.num_norm_groups;
  site_norms_kappa(p, coef, floor_sq, rho, norm, kappa);
  for (int64_t g = 0; g < p.num_norm_groups; ++g) grad_norm[g] = T(0);
  for (int64_t k = 0; k < p.num_kappa_entries; ++k) grad_kappa[k] = T(0);
  for (int64_t r = 0; r < p.num_rho_entries; ++r) grad_rho[r] = T(0);
  const In g_power = grad;
  const In g_phase = grad + p.num_power_features;
  const In g_bis = grad + 2 * p.num_power_features;
  for (int64_t e = 0; e < p.num_c_entries; ++e) {
    const int64_t f = p.entry_of[e], r = p.phase_r[e], g = p.phase_norm[f];
    const T gp = g_phase[f] / norm[g];
    grad_c[e] = T(2) * c[e] * g_power[f] + gp * rho[r];
    grad_rho[r] += gp * c[e];
    grad_norm[g] -= gp * c[e] * rho[r] / norm[g];
  }
  for (int64_t q = 0; q < p.num_bispectrum_terms; ++q) {
    const T gb = g_bis[p.bis_of[q]];
    grad_c[p.bis_c[q]] += gb * kappa[p.bis_k[q]];
    grad_kappa[p.bis_k[q]] += gb * c[p.bis_c[q]];
  }
  for (int64_t t = 0; t < p.num_kappa_terms; ++t) {
    const int64_t r1 = p.kappa_r1[t], r2 = p.kappa_r2[t], n1 = p.kappa_n1[t], n2 = p.kappa_n2[t];
    const T w = grad_kappa[p.kappa_of[t]] * T(coef[t]) / (norm[n1] * norm[n2]);
    const T value = w * rho[r1] * rho[r2];
    grad_rho[r1] += w * rho[r2];
    grad_rho[r2] += w * rho[r1];
    grad_norm[n1] -= value / norm[n1];
    grad_norm[n2] -= value / norm[n2];
  }
  for (int64_t r = 0; r < p.num_rho_entries; ++r) {
    const int64_t g = p.norm_of[r];
    grad_rho[r] += grad_norm[g] * rho[r] / norm[g];
  }
}

}  // namespace descriptors
}  // namespace spinforce
