#pragma once
// Raw-pointer launchers of the KPM kernels in cuda/kpm.cu (no torch headers). Pointers are
// device pointers; launches go to the default stream, the stream ATen uses unless told otherwise.
#include "electrons/kpm_stencil.hpp"

namespace spinforce {
namespace kpm {

// One Chebyshev step y = scale H~ x + zcoef z + src Rprobe on every site; *dot += Re <Rprobe, y>.
template <class T>
void cuda_chebyshev_step(const Stencil<T>& st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale, T zcoef, T src,
                         double* dot);

// One reverse-mode step at order m: G_i += weight alpha_{m-1} beta_m^+ on-site; when `update`,
// alpha_m <- 2 H~ alpha_{m-1} - alpha_m and beta_{m+1} <- 2 H~ beta_m - beta_{m+1} + c Rprobe.
template <class T>
void cuda_reverse_step(const Stencil<T>& st, const Cx<T>* alpha_prev, Cx<T>* alpha_cur, const Cx<T>* beta_cur,
                       Cx<T>* beta_next, double weight, T c, bool update, double* G);

}  // namespace kpm
}  // namespace spinforce
