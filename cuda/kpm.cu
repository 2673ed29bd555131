// CUDA kernels of the kernel polynomial method. The arithmetic per element is the one the CPU
// path runs (cpp/electrons/kpm_stencil.hpp); here one warp handles one site, its lanes striding
// over the R probe columns (coalesced for R >= 32), so the on-site density-matrix block of a
// site is summed within its warp. The two inner products of a Chebyshev step are summed per
// block in a fixed tree order and the blocks' partial sums are added by one more block in a
// fixed order: no atomics, the same moments on every run.
#include <cstdint>

#include "electrons/kpm_cuda.hpp"
#include "electrons/kpm_stencil.hpp"
#include "launch.cuh"

namespace spinforce {
namespace kpm {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarp * kWarpsPerBlock;

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// One warp per site; at most kCudaMaxBlocks blocks, the warps striding over the sites beyond.
unsigned num_blocks(int64_t num_sites) {
  const int64_t blocks = (num_sites + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(blocks < kCudaMaxBlocks ? blocks : kCudaMaxBlocks);
}

// Sum of v over the block's threads, in a fixed order; valid in thread 0. Every thread must call it.
__device__ __forceinline__ double block_sum(double v, double* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kWarpsPerBlock; ++w) total += shared[w];
  __syncthreads();  // shared may be reused by the caller
  return total;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    chebyshev_step_kernel(Stencil<T> st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale, T zcoef,
                          double* partials) {
  __shared__ double shared[kWarpsPerBlock];
  const int lane = threadIdx.x % kWarp;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const LocalTerms<T> none;
  double yy = 0.0, yx = 0.0;
  for (int64_t i = first; i < st.num_sites; i += stride)
    for (int r = lane; r < st.R; r += kWarp) {
      const ChunkDots d = chebyshev_chunk<1>(st, i, r, x, z, y, scale, zcoef, none);
      yy += d.yy;
      yx += d.yx;
    }
  yy = block_sum(yy, shared);
  yx = block_sum(yx, shared);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = yy;
    partials[2 * blockIdx.x + 1] = yx;
  }
}

// dots[k] += sum over blocks b of partials[2 b + k], k = 0, 1, by one block in a fixed order.
__global__ void __launch_bounds__(kThreads) finish_dots_kernel(const double* partials, unsigned blocks, double* dots) {
  __shared__ double shared[kWarpsPerBlock];
  double yy = 0.0, yx = 0.0;
  for (unsigned b = threadIdx.x; b < blocks; b += blockDim.x) {
    yy += partials[2 * b];
    yx += partials[2 * b + 1];
  }
  yy = block_sum(yy, shared);
  yx = block_sum(yx, shared);
  if (threadIdx.x == 0) {
    dots[0] += yy;
    dots[1] += yx;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    reverse_step_kernel(Stencil<T> st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur, Cx<T>* alpha_free,
                        const Cx<T>* beta_cur, Cx<T>* beta_next, double weight, LocalTerms<T> sources, bool update,
                        double* G) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const LocalTerms<T> none;
  // Every lane of a warp runs the same sites (the warp index is shared), so the shuffles below
  // see all 32 lanes. Each element is read and written by one thread only: alpha_free and
  // beta_next at (i, r) are written after this thread's own reads of them at (i, r); the
  // neighbours' values read are those of alpha_prev and beta_cur, which nobody writes here.
  for (int64_t i = first; i < st.num_sites; i += stride) {
    double g[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int r = lane; r < st.R; r += kWarp) {
      accumulate_onsite<1>(i, r, st.R, alpha_prev, beta_cur, g);
      if (update) {
        chebyshev_chunk<1>(st, i, r, alpha_prev, alpha_cur, alpha_free, T(2), T(-1), none);
        chebyshev_chunk<1>(st, i, r, beta_cur, beta_next, beta_next, T(2), T(-1), sources);
      }
    }
    for (int k = 0; k < 8; ++k) {
      const double v = warp_sum(g[k]);
      if (lane == 0) G[8 * i + k] += weight * v;
    }
  }
}

}  // namespace

template <class T>
void cuda_chebyshev_step(const Stencil<T>& st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale, T zcoef,
                         double* dots, double* partials, int device) {
  const unsigned blocks = num_blocks(st.num_sites);
  gpu::launch("kpm_chebyshev_step", device, blocks, kThreads, 0, chebyshev_step_kernel<T>, st, x, z, y, scale, zcoef,
              partials);
  if (blocks > 0) gpu::launch("kpm_finish_dots", device, 1, kThreads, 0, finish_dots_kernel, partials, blocks, dots);
}

template <class T>
void cuda_reverse_step(const Stencil<T>& st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur, Cx<T>* alpha_free,
                       const Cx<T>* beta_cur, Cx<T>* beta_next, double weight, const LocalTerms<T>& sources,
                       bool update, double* G, int device) {
  gpu::launch("kpm_reverse_step", device, num_blocks(st.num_sites), kThreads, 0, reverse_step_kernel<T>, st,
              alpha_prev, alpha_cur, alpha_free, beta_cur, beta_next, weight, sources, update, G);
}

#define SPINFORCE_KPM_INSTANTIATE(T)                                                                               \
  template void cuda_chebyshev_step<T>(const Stencil<T>&, const Cx<T>*, const Cx<T>*, Cx<T>*, T, T, double*,       \
                                       double*, int);                                                              \
  template void cuda_reverse_step<T>(const Stencil<T>&, const Cx<T>*, const Cx<T>*, Cx<T>*, const Cx<T>*, Cx<T>*,  \
                                     double, const LocalTerms<T>&, bool, double*, int);
SPINFORCE_KPM_INSTANTIATE(float)
SPINFORCE_KPM_INSTANTIATE(double)
#undef SPINFORCE_KPM_INSTANTIATE

}  // namespace kpm
}  // namespace spinforce
