#pragma once
// The registry of LLG integrators. A scheme is a struct in dynamics/schemes/ with its name, its
// number of stages (one field evaluation each), whether it needs the aux array, and its per-site
// stage(s, i, arrays, coefficients, xi): stage 0 sees the fields of S^n, stage s > 0 those of
// the configuration stage s - 1 wrote to `work`, and the last stage writes S^{n+1}. The same
// per-site code runs in the CPU loop (dynamics/integrator.cpp) and the CUDA kernel (cuda/llg.cu).
// Adding a scheme: its header, one entry in `Integrators` below, a test.
#include "common/hd.hpp"
#include "dynamics/llg_update.hpp"
#include "dynamics/schemes/heun.hpp"
#include "dynamics/schemes/rk4.hpp"
#include "dynamics/schemes/sib.hpp"

namespace spinforce {

struct SchemeInfo {
  const char* name;
  int stages;
  bool uses_aux;
};

template <class... Schemes>
struct SchemeRegistry {
  static constexpr int size = sizeof...(Schemes);
  static constexpr SchemeInfo info[size] = {{Schemes::name, Schemes::stages, Schemes::uses_aux}...};

  SPINFORCE_HD static void stage(int scheme, int s, int64_t i, const LLGArrays& a, const LLGCoefficients& c, Vec3 xi) {
    int k = 0;
    ((k++ == scheme ? Schemes::stage(s, i, a, c, xi) : void()), ...);
  }
};

// Ids are positions in this list; the first is the default.
using Integrators = SchemeRegistry<SIB, Heun, RK4>;

// Stage s of scheme `scheme` at site i for step `step`, thermal field included.
SPINFORCE_HD void integrator_stage_site(int scheme, int s, int64_t i, const LLGArrays& a, const LLGCoefficients& c,
                                        uint64_t step) {
  Integrators::stage(scheme, s, i, a, c, stage_noise(s, i, a, c, step));
}

}  // namespace spinforce
