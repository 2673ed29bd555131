#pragma once
// SIB, the semi-implicit midpoint scheme of Mentink et al., J. Phys.: Condens. Matter 22, 176001
// (2010), with the Cayley map C(a)S = ((1 - a.a) S + 2 a x S + 2 (a.S) a) / (1 + a.a):
//   predictor S~ = C(dt/2 A(S^n)) S^n, midpoint S_m = normalise((S^n + S~)/2),
//   corrector S^{n+1} = C(dt/2 A(S_m)) S^n.
// Two field evaluations per step; C is a rotation, so |S| = 1 holds to round-off; converges to
// the Stratonovich solution that the Gilbert noise requires.
#include "dynamics/llg_update.hpp"

namespace spinforce {

struct SIB {
  static constexpr const char* name = "sib";
  static constexpr int stages = 2;
  static constexpr bool uses_aux = false;

  SPINFORCE_HD static void stage(int s, int64_t i, const LLGArrays& a, const LLGCoefficients& c, Vec3 xi) {
    const Vec3 S = load3(a.spins, i);
    if (s == 0) {
      const Vec3 A = precession_vector(S, load3(a.fields, i) + xi, c);
      const Vec3 S_pred = cayley_rotate((0.5 * c.dt) * A, S);
      store3(a.work, i, normalized(0.5 * (S + S_pred)));
    } else {
      const Vec3 A = precession_vector(load3(a.work, i), load3(a.fields, i) + xi, c);
      store3(a.spins, i, cayley_rotate((0.5 * c.dt) * A, S));
    }
  }
};

}  // namespace spinforce
