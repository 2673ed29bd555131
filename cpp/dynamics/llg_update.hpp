#pragma once
// Per-spin arithmetic of the stochastic LLG integrators, shared verbatim by the CPU loop
// (dynamics/llg.cpp) and the CUDA kernel (cuda/llg.cu).
//
// Landau-Lifshitz form of the Gilbert equation dS/dt = -gamma S x (H + xi) + alpha S x dS/dt:
//   dS/dt = A x S,   A = gamma/(1+alpha^2) (H_eff + alpha S x H_eff),   H_eff = H + xi,
// xi Gaussian with variance 2 alpha kT/(gamma dt) per component, drawn once per step from
// Philox keyed by (seed, step, site) and used unchanged in both stages of the step.
//
// Integrators (two field evaluations per step each):
//  SIB  (Mentink et al., J. Phys.: Condens. Matter 22, 176001 (2010)), Cayley map
//       C(a)S = ((1 - a.a) S + 2 a x S + 2 (a.S) a) / (1 + a.a):
//       predictor S~ = C(dt/2 A(S^n)) S^n, midpoint S_m = normalise((S^n + S~)/2),
//       corrector S^{n+1} = C(dt/2 A(S_m)) S^n.
//  Heun (Depondt & Mertens, J. Phys.: Condens. Matter 21, 336005 (2009)), exact rotations R(w):
//       predictor S' = R(dt A(S^n)) S^n, corrector S^{n+1} = R(dt (A(S^n) + A(S'))/2) S^n.
// Both rotate S^n, so |S| = 1 holds to round-off, and both converge to the Stratonovich
// solution that the Gilbert noise of Brown's fluctuation-dissipation theorem requires.
#include <cmath>
#include <cstdint>

#include "common/hd.hpp"
#include "dynamics/philox.hpp"

namespace spinforce {

struct Vec3 {
  double x, y, z;
};

SPINFORCE_HD Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
SPINFORCE_HD Vec3 operator*(double s, Vec3 a) { return {s * a.x, s * a.y, s * a.z}; }
SPINFORCE_HD double dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
SPINFORCE_HD Vec3 cross(Vec3 a, Vec3 b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
SPINFORCE_HD Vec3 load3(const double* p, int64_t i) { return {p[3 * i], p[3 * i + 1], p[3 * i + 2]}; }
SPINFORCE_HD void store3(double* p, int64_t i, Vec3 v) {
  p[3 * i] = v.x;
  p[3 * i + 1] = v.y;
  p[3 * i + 2] = v.z;
}

enum class Integrator : int { SIB = 0, Heun = 1 };
enum class LLGStage : int { SIBPredictor = 0, SIBCorrector = 1, HeunPredictor = 2, HeunCorrector = 3 };

// Everything a stage needs besides the arrays. noise_sigma = sqrt(2 alpha kT / (gamma dt)).
struct LLGCoefficients {
  double dt = 0.0;
  double alpha = 0.0;
  double gamma = 1.0;
  double noise_sigma = 0.0;
  uint64_t seed = 0;
};

// The arrays of one stage, (N,3) row-major float64:
//   spins   S^n, overwritten with S^{n+1} by the correctors (each site touches only its own row)
//   fields  H of the configuration the stage evaluates at (S^n, S_m or S')
//   work    the predictors' output (S_m for SIB, S' for Heun)
//   aux     Heun only: A(S^n) saved by the predictor for the corrector
//   noise   optional: the predictor stores xi and the corrector reads it back instead of drawing
//           it again (the CPU saves the transcendentals; the GPU passes nullptr and redraws)
struct LLGArrays {
  double* spins;
  const double* fields;
  double* work;
  double* aux;
  double* noise;
};

SPINFORCE_HD Vec3 thermal_field(const LLGCoefficients& c, uint64_t step, int64_t site) {
  if (c.noise_sigma == 0.0) return {0.0, 0.0, 0.0};
  double g[4];
  philox_normals(c.seed, step, static_cast<uint64_t>(site), g);
  return {c.noise_sigma * g[0], c.noise_sigma * g[1], c.noise_sigma * g[2]};
}

// A with dS/dt = A x S.
SPINFORCE_HD Vec3 precession_vector(Vec3 S, Vec3 H_eff, const LLGCoefficients& c) {
  const double pref = c.gamma / (1.0 + c.alpha * c.alpha);
  return pref * (H_eff + c.alpha * cross(S, H_eff));
}

SPINFORCE_HD Vec3 cayley_rotate(Vec3 a, Vec3 S) {
  const double aa = dot(a, a);
  return (1.0 / (1.0 + aa)) * ((1.0 - aa) * S + 2.0 * cross(a, S) + (2.0 * dot(a, S)) * a);
}

// Rotation of S by the angle |w| about w (Rodrigues), with series for small angles.
SPINFORCE_HD Vec3 exact_rotate(Vec3 w, Vec3 S) {
  const double t2 = dot(w, w);
  double sinc, cosc;  // sin(t)/t and (1 - cos t)/t^2
  if (t2 < 1e-8) {
    sinc = 1.0 - t2 / 6.0 + t2 * t2 / 120.0;
    cosc = 0.5 - t2 / 24.0 + t2 * t2 / 720.0;
  } else {
    const double t = std::sqrt(t2);
    sinc = std::sin(t) / t;
    cosc = (1.0 - std::cos(t)) / t2;
  }
  const Vec3 wxS = cross(w, S);
  return S + sinc * wxS + cosc * cross(w, wxS);
}

SPINFORCE_HD Vec3 normalized(Vec3 v) { return (1.0 / std::sqrt(dot(v, v))) * v; }

// One stage of one step for site i.
SPINFORCE_HD void llg_stage_site(LLGStage stage, int64_t i, const LLGArrays& a, const LLGCoefficients& c,
                                 uint64_t step) {
  const Vec3 S = load3(a.spins, i);
  const bool corrector = stage == LLGStage::SIBCorrector || stage == LLGStage::HeunCorrector;
  Vec3 xi;
  if (corrector && a.noise != nullptr) {
    xi = load3(a.noise, i);
  } else {
    xi = thermal_field(c, step, i);
    if (a.noise != nullptr) store3(a.noise, i, xi);
  }
  switch (stage) {
    case LLGStage::SIBPredictor: {
      const Vec3 A = precession_vector(S, load3(a.fields, i) + xi, c);
      const Vec3 S_pred = cayley_rotate((0.5 * c.dt) * A, S);
      store3(a.work, i, normalized(0.5 * (S + S_pred)));
      break;
    }
    case LLGStage::SIBCorrector: {
      const Vec3 A = precession_vector(load3(a.work, i), load3(a.fields, i) + xi, c);
      store3(a.spins, i, cayley_rotate((0.5 * c.dt) * A, S));
      break;
    }
    case LLGStage::HeunPredictor: {
      const Vec3 A = precession_vector(S, load3(a.fields, i) + xi, c);
      store3(a.aux, i, A);
      store3(a.work, i, exact_rotate(c.dt * A, S));
      break;
    }
    case LLGStage::HeunCorrector: {
      const Vec3 A = precession_vector(load3(a.work, i), load3(a.fields, i) + xi, c);
      store3(a.spins, i, exact_rotate((0.5 * c.dt) * (load3(a.aux, i) + A), S));
      break;
    }
  }
}

}  // namespace spinforce
