// CUDA kernels of the LLG stages: one thread per spin, the arithmetic of
// the registered schemes (cpp/dynamics/integrators.hpp) unchanged (so the CPU tests cover it), Philox noise keyed by
// (seed, step, site) as on the CPU. Spins, fields and work arrays are (N, 3) rows of three
// doubles: a warp reads 32 consecutive rows, 768 contiguous bytes per array.
#include <cstdint>

#include "dynamics/llg_cuda.hpp"
#include "launch.cuh"

namespace spinforce {
namespace {

constexpr int kThreads = 256;

__global__ void llg_stage_kernel(int scheme, int stage, LLGArrays arrays, LLGCoefficients coeff, int64_t num_sites,
                                 uint64_t step) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < num_sites) integrator_stage_site(scheme, stage, i, arrays, coeff, step);
}

__global__ void philox_normals_kernel(uint64_t seed, uint64_t step, int64_t num_sites, double* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < num_sites) philox_normals(seed, step, static_cast<uint64_t>(i), out + 4 * i);
}

}  // namespace

void llg_stage_cuda(int scheme, int stage, const LLGArrays& arrays, const LLGCoefficients& coeff, int64_t num_sites,
                    uint64_t step, int device) {
  gpu::launch("llg_stage", device, gpu::blocks_for(num_sites, kThreads), kThreads, 0, llg_stage_kernel, scheme, stage,
              arrays, coeff, num_sites, step);
}

void philox_normals_cuda(uint64_t seed, uint64_t step, int64_t num_sites, double* out, int device) {
  gpu::launch("philox_normals", device, gpu::blocks_for(num_sites, kThreads), kThreads, 0, philox_normals_kernel, seed,
              step, num_sites, out);
}

}  // namespace spinforce
