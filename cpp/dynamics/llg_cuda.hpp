#pragma once
// Raw-pointer launchers of the LLG kernels in cuda/llg.cu (no torch headers), compiled only with
// SPINFORCE_WITH_CUDA. Arrays live on CUDA device `device`; kernels run on torch's current
// stream of that device.
#include <cstdint>

#include "dynamics/integrators.hpp"

namespace spinforce {

// Stage `stage` of registered scheme `scheme` (dynamics/integrators.hpp) on every site.
void llg_stage_cuda(int scheme, int stage, const LLGArrays& arrays, const LLGCoefficients& coeff, int64_t num_sites,
                    uint64_t step, int device);
// The normals of sites 0..num_sites-1 at (seed, step) as the kernels draw them: out (num_sites, 4).
void philox_normals_cuda(uint64_t seed, uint64_t step, int64_t num_sites, double* out, int device);

}  // namespace spinforce
