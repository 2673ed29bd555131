// CUDA kernel of the LLG stages: one thread per spin, the arithmetic of
// cpp/dynamics/llg_update.hpp unchanged (so the CPU tests cover it), Philox noise keyed by
// (seed, step, site) as on the CPU.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "dynamics/llg_update.hpp"

namespace spinforce {

__global__ void llg_stage_kernel(LLGStage stage, LLGArrays arrays, LLGCoefficients coeff, int64_t num_sites,
                                 uint64_t step) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < num_sites) llg_stage_site(stage, i, arrays, coeff, step);
}

// Raw-pointer launcher on `stream` (torch-free, so the compile-only check builds it).
void launch_llg_stage(LLGStage stage, const LLGArrays& arrays, const LLGCoefficients& coeff, int64_t num_sites,
                      uint64_t step, cudaStream_t stream) {
  if (num_sites == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = (num_sites + kThreads - 1) / kThreads;
  llg_stage_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(stage, arrays, coeff, num_sites, step);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("LLG kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace spinforce

#ifndef SPINFORCE_CUDA_CHECK_ONLY
#include <ATen/cuda/CUDAContext.h>

#include "dynamics/llg.hpp"

namespace spinforce {

void llg_stage_cuda(LLGStage stage, const LLGArrays& arrays, const LLGCoefficients& coeff, int64_t num_sites,
                    uint64_t step) {
  launch_llg_stage(stage, arrays, coeff, num_sites, step, at::cuda::getCurrentCUDAStream());
}

}  // namespace spinforce
#endif
