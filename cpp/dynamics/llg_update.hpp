#pragma once
// Per-spin arithmetic of the stochastic LLG integrators, shared verbatim by the CPU loop
// (dynamics/integrator.cpp) and the CUDA kernel (cuda/llg.cu).
//
// Landau-Lifshitz form of the Gilbert equation dS/dt = -gamma S x (H + xi) + alpha S x dS/dt:
//   dS/dt = A x S,   A = gamma/(1+alpha^2) (H_eff - (S.H_eff) S + alpha S x H_eff),   H_eff = H + xi,
// xi Gaussian with variance 2 alpha kT/(gamma dt) per component, drawn once per step from
// Philox keyed by (seed, step, site) and used unchanged in every stage of the step.
//
// The integrators (dynamics/integrators.hpp) build their stages from the pieces below.
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

// Everything a stage needs besides the arrays. noise_sigma = sqrt(2 alpha kT / (gamma dt)).
struct LLGCoefficients {
  double dt = 0.0;
  double alpha = 0.0;
  double gamma = 1.0;
  double noise_sigma = 0.0;
  uint64_t seed = 0;
  // Global index of site 0 of the spins integrated here (a slab of a lattice split over
  // processes): the noise is keyed by the global site index, whatever the split.
  uint64_t site_offset = 0;
};

// The arrays of one stage, (N,3) row-major float64:
//   spins   S^n, overwritten with S^{n+1} by a scheme's last stage (each site touches only its
//           own row)
//   fields  H of the configuration the stage evaluates at: S^n for the first stage, `work` after
//   work    the configuration an earlier stage wrote for the next field evaluation
//   aux     for the schemes that carry a sum across stages (Heun: A(S^n); RK4: its slopes)
//   noise   optional: the first stage stores xi and later stages read it back instead of
//           drawing it again (the CPU saves the transcendentals; the GPU passes nullptr and redraws)
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
  philox_normals(c.seed, step, c.site_offset + static_cast<uint64_t>(site), g);
  return {c.noise_sigma * g[0], c.noise_sigma * g[1], c.noise_sigma * g[2]};
}

// A with dS/dt = A x S, for a unit spin S. The part of H_eff along S drops out of dS/dt, but the
// midpoint and Heun schemes apply A(S') to S^n != S', where it would rotate S^n about S': an error
// of order dt^2 times that part per step. For the s-d model that part is about J (the exchange
// field points along the spin; about 50 times the perpendicular part in a quench at J = 6), which
// made SIB at dt = 0.05 order about 5 % too fast per unit time; so it is removed here (exact).
SPINFORCE_HD Vec3 precession_vector(Vec3 S, Vec3 H_eff, const LLGCoefficients& c) {
  const double pref = c.gamma / (1.0 + c.alpha * c.alpha);
  return pref * (H_eff + (-dot(S, H_eff)) * S + c.alpha * cross(S, H_eff));
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

// The thermal field of site i for stage `stage` of step `step`: drawn by the first stage (and
// kept in a.noise when there is one), read back by the later ones, so that every stage of a
// step sees the same xi.
SPINFORCE_HD Vec3 stage_noise(int stage, int64_t i, const LLGArrays& a, const LLGCoefficients& c, uint64_t step) {
  if (stage > 0 && a.noise != nullptr) return load3(a.noise, i);
  const Vec3 xi = thermal_field(c, step, i);
  if (a.noise != nullptr) store3(a.noise, i, xi);
  return xi;
}

}  // namespace spinforce
