#pragma once
// Heun with exact rotations, Depondt & Mertens, J. Phys.: Condens. Matter 21, 336005 (2009),
// R(w) the rotation by |w| about w:
//   predictor S' = R(dt A(S^n)) S^n, corrector S^{n+1} = R(dt (A(S^n) + A(S'))/2) S^n.
// Two field evaluations per step; rotations keep |S| = 1 to round-off; Stratonovich.
#include "dynamics/llg_update.hpp"

namespace spinforce {

struct Heun {
  static constexpr const char* name = "heun";
  static constexpr int stages = 2;
  static constexpr bool uses_aux = true;  // A(S^n) from the predictor

  SPINFORCE_HD static void stage(int s, int64_t i, const LLGArrays& a, const LLGCoefficients& c, Vec3 xi) {
    const Vec3 S = load3(a.spins, i);
    if (s == 0) {
      const Vec3 A = precession_vector(S, load3(a.fields, i) + xi, c);
      store3(a.aux, i, A);
      store3(a.work, i, exact_rotate(c.dt * A, S));
    } else {
      const Vec3 A = precession_vector(load3(a.work, i), load3(a.fields, i) + xi, c);
      store3(a.spins, i, exact_rotate((0.5 * c.dt) * (load3(a.aux, i) + A), S));
    }
  }
};

}  // namespace spinforce
