#pragma once
// Classical fourth-order Runge-Kutta for dS/dt = f(S) = A(S^) x S^, S^ = S/|S| (on the unit
// sphere the LLG right-hand side; off it a smooth extension, so the fields are always evaluated
// at unit spins):
//   k1 = f(S^n), k2 = f(S^n + dt/2 k1), k3 = f(S^n + dt/2 k2), k4 = f(S^n + dt k3),
//   S^{n+1} = normalise(S^n + dt/6 (k1 + 2 k2 + 2 k3 + k4)).
// Four field evaluations per step, global error O(dt^4) without noise (the final projection
// adds O(dt^5) per step). The thermal field is held over the step as in Heun, which gives the
// Stratonovich limit; with noise the order drops to that of Heun.
#include "dynamics/llg_update.hpp"

namespace spinforce {

struct RK4 {
  static constexpr const char* name = "rk4";
  static constexpr int stages = 4;
  static constexpr bool uses_aux = true;  // k1 + 2 k2 + 2 k3 so far

  SPINFORCE_HD static void stage(int s, int64_t i, const LLGArrays& a, const LLGCoefficients& c, Vec3 xi) {
    const Vec3 S = load3(a.spins, i);
    const Vec3 X = s == 0 ? S : load3(a.work, i);
    const Vec3 k = cross(precession_vector(X, load3(a.fields, i) + xi, c), X);
    if (s == 3) {
      store3(a.spins, i, normalized(S + (c.dt / 6.0) * (load3(a.aux, i) + k)));
      return;
    }
    store3(a.aux, i, s == 0 ? k : load3(a.aux, i) + 2.0 * k);
    store3(a.work, i, normalized(S + (s == 2 ? c.dt : 0.5 * c.dt) * k));
  }
};

}  // namespace spinforce
