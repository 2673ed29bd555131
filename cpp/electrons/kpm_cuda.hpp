#pragma once
// Raw-pointer launchers of the KPM kernels in cuda/kpm.cu (no torch headers). Pointers are
// device pointers on CUDA device `device`; kernels run on torch's current stream of that device.
#include <cstdint>

#include "electrons/kpm_stencil.hpp"

namespace spinforce {
namespace kpm {

// Blocks of the Chebyshev-step kernel at most; `partials` must hold 2 doubles per block. A fixed
// number independent of the GPU, so the moments are the same run to run and GPU to GPU.
constexpr int64_t kCudaMaxBlocks = 2048;

// One Chebyshev step y = scale H~ x + zcoef z on every site; dots[0] += <y, y>, dots[1] += Re <y, x>,
// summed per block into `partials`, then in a fixed order (no atomics: reproducible).
template <class T>
void cuda_chebyshev_step(const Stencil<T>& st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale, T zcoef,
                         double* dots, double* partials, int device);

// One reverse-mode step at order n (see KPM::compute): G_i += weight alpha_{n-1} beta_n^+ on-site;
// when `update`, alpha_free <- 2 H~ alpha_{n-1} - alpha_n and
// beta_next <- 2 H~ beta_cur - beta_next + sum_j sources.coef[j] sources.v[j].
template <class T>
void cuda_reverse_step(const Stencil<T>& st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur, Cx<T>* alpha_free,
                       const Cx<T>* beta_cur, Cx<T>* beta_next, double weight, const LocalTerms<T>& sources,
                       bool update, double* G, int device);

}  // namespace kpm
}  // namespace spinforce
