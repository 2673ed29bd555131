// CUDA kernels of the kernel polynomial method. The arithmetic per element is the one the CPU
// path runs (cpp/electrons/kpm_stencil.hpp); here one warp handles one site, its lanes striding
// over the R probe columns (coalesced for R >= 32), so the per-site reductions (moment, on-site
// density-matrix block) need no atomics except one per warp for the moment.
#include <cuda_runtime.h>

#include "electrons/kpm_cuda.hpp"
#include "electrons/kpm_stencil.hpp"

namespace spinforce {
namespace kpm {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

int num_blocks(int64_t num_sites) {
  const int64_t blocks = (num_sites + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<int>(blocks < 65535 * 32 ? blocks : 65535 * 32);
}

template <class T>
__global__ void chebyshev_step_kernel(Stencil<T> st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale, T zcoef,
                                      double* dots) {
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
  yy = warp_sum(yy);
  yx = warp_sum(yx);
  if (lane == 0) {
    atomicAdd(dots, yy);
    atomicAdd(dots + 1, yx);
  }
}

template <class T>
__global__ void reverse_step_kernel(Stencil<T> st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur, Cx<T>* alpha_free,
                                    const Cx<T>* beta_cur, Cx<T>* beta_next, double weight, LocalTerms<T> sources,
                                    bool update, double* G) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const LocalTerms<T> none;
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
                         double* dots) {
  if (st.num_sites == 0) return;
  chebyshev_step_kernel<T><<<num_blocks(st.num_sites), kWarpsPerBlock * kWarp>>>(st, x, z, y, scale, zcoef, dots);
}

template <class T>
void cuda_reverse_step(const Stencil<T>& st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur, Cx<T>* alpha_free,
                       const Cx<T>* beta_cur, Cx<T>* beta_next, double weight, const LocalTerms<T>& sources,
                       bool update, double* G) {
  if (st.num_sites == 0) return;
  reverse_step_kernel<T><<<num_blocks(st.num_sites), kWarpsPerBlock * kWarp>>>(
      st, alpha_prev, alpha_cur, alpha_free, beta_cur, beta_next, weight, sources, update, G);
}

#define SPINFORCE_KPM_INSTANTIATE(T)                                                                              \
  template void cuda_chebyshev_step<T>(const Stencil<T>&, const Cx<T>*, const Cx<T>*, Cx<T>*, T, T, double*);     \
  template void cuda_reverse_step<T>(const Stencil<T>&, const Cx<T>*, const Cx<T>*, Cx<T>*, const Cx<T>*, Cx<T>*, \
                                     double, const LocalTerms<T>&, bool, double*);
SPINFORCE_KPM_INSTANTIATE(float)
SPINFORCE_KPM_INSTANTIATE(double)
#undef SPINFORCE_KPM_INSTANTIATE

}  // namespace kpm
}  // namespace spinforce
