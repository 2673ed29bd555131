// CUDA kernels of the descriptor ops (local spin variables, invariants). One thread per site runs
// the per-site arithmetic shared with the CPU loops (cpp/descriptors/spin_variables.hpp,
// invariants.hpp). Every per-site array is held feature-major, (width, N), and each thread
// addresses its row through a Strided row (common/hd.hpp): thread i and thread i + 1 then read
// and write neighbouring addresses, so every global access of a warp is coalesced, whatever the
// row width (row-major rows of 100-1000 values made each warp touch 32 rows at once). Inputs are
// brought to that layout with one transpose each unless they already have it, and outputs are
// returned as (N, width) views of feature-major buffers (no copy; the ops accept such views as
// inputs without a copy either). The ATen glue is compiled only inside the extension; the
// torch-free compile check (cuda/CMakeLists.txt) builds the kernels and launchers alone.
#include <cstdint>

#include "common/hd.hpp"
#include "descriptors/invariants.hpp"
#include "descriptors/spin_variables.hpp"
#include "launch.cuh"

namespace spinforce {
namespace descriptors {
namespace kernels {

constexpr int kThreads = 128;

template <class T>
__device__ __forceinline__ Strided<T> row(T* data, int64_t i, int64_t N) {
  return {data + i, N};
}

template <class T>
__global__ void variables_kernel(const T* patch, int64_t N, const int64_t* pairs, int64_t nb,
                                 const int64_t* triangles, int64_t nt, T* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N) site_variables(row(patch, i, N), pairs, nb, triangles, nt, row(out, i, N));
}

template <class T>
__global__ void vjp_kernel(const T* patch, int64_t N, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                           int64_t nt, const T* grad, T* grad_patch) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N) site_variables_vjp(row(patch, i, N), pairs, nb, triangles, nt, row(grad, i, N), row(grad_patch, i, N));
}

template <class T>
__global__ void second_kernel(const T* patch, int64_t N, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                              int64_t nt, const T* grad, const T* u, T* jvp, T* hvp) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N)
    site_variables_second(row(patch, i, N), pairs, nb, triangles, nt, row(grad, i, N), row(u, i, N), row(jvp, i, N),
                          row(hvp, i, N));
}

template <class T>
__global__ void invariants_kernel(InvariantPlan p, const double* coef, T floor_sq, const T* c, const T* rho, T* out,
                                  T* scratch, int64_t N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N) site_invariants(p, coef, floor_sq, row(c, i, N), row(rho, i, N), row(out, i, N), row(scratch, i, N));
}

template <class T>
__global__ void invariants_vjp_kernel(InvariantPlan p, const double* coef, T floor_sq, const T* c, const T* rho,
                                      const T* grad, T* grad_c, T* grad_rho, T* scratch, int64_t N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N)
    site_invariants_vjp(p, coef, floor_sq, row(c, i, N), row(rho, i, N), row(grad, i, N), row(grad_c, i, N),
                        row(grad_rho, i, N), row(scratch, i, N));
}

// Raw-pointer launchers; every array is feature-major (width, N). grad_patch and hvp must be
// zeroed; scratch holds p.num_scratch() rows.
template <class T>
void variables(const T* patch, int64_t N, const int64_t* pairs, int64_t nb, const int64_t* triangles, int64_t nt,
               T* out, int device) {
  gpu::launch("local_spin_variables", device, gpu::blocks_for(N, kThreads), kThreads, 0, variables_kernel<T>, patch, N,
              pairs, nb, triangles, nt, out);
}

template <class T>
void variables_vjp(const T* patch, int64_t N, const int64_t* pairs, int64_t nb, const int64_t* triangles, int64_t nt,
                   const T* grad, T* grad_patch, int device) {
  gpu::launch("local_spin_variables_backward", device, gpu::blocks_for(N, kThreads), kThreads, 0, vjp_kernel<T>, patch,
              N, pairs, nb, triangles, nt, grad, grad_patch);
}

template <class T>
void variables_second(const T* patch, int64_t N, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                      int64_t nt, const T* grad, const T* u, T* jvp, T* hvp, int device) {
  gpu::launch("local_spin_variables_double_backward", device, gpu::blocks_for(N, kThreads), kThreads, 0,
              second_kernel<T>, patch, N, pairs, nb, triangles, nt, grad, u, jvp, hvp);
}

template <class T>
void invariants(const InvariantPlan& p, const double* coef, T floor_sq, const T* c, const T* rho, T* out, T* scratch,
                int64_t N, int device) {
  gpu::launch("descriptor_invariants", device, gpu::blocks_for(N, kThreads), kThreads, 0, invariants_kernel<T>, p,
              coef, floor_sq, c, rho, out, scratch, N);
}

template <class T>
void invariants_vjp(const InvariantPlan& p, const double* coef, T floor_sq, const T* c, const T* rho, const T* grad,
                    T* grad_c, T* grad_rho, T* scratch, int64_t N, int device) {
  gpu::launch("descriptor_invariants_backward", device, gpu::blocks_for(N, kThreads), kThreads, 0,
              invariants_vjp_kernel<T>, p, coef, floor_sq, c, rho, grad, grad_c, grad_rho, scratch, N);
}

#define SPINFORCE_DESCRIPTOR_INSTANTIATE(T)                                                                          \
  template void variables<T>(const T*, int64_t, const int64_t*, int64_t, const int64_t*, int64_t, T*, int);          \
  template void variables_vjp<T>(const T*, int64_t, const int64_t*, int64_t, const int64_t*, int64_t, const T*, T*,  \
                                 int);                                                                               \
  template void variables_second<T>(const T*, int64_t, const int64_t*, int64_t, const int64_t*, int64_t, const T*,   \
                                    const T*, T*, T*, int);                                                          \
  template void invariants<T>(const InvariantPlan&, const double*, T, const T*, const T*, T*, T*, int64_t, int);     \
  template void invariants_vjp<T>(const InvariantPlan&, const double*, T, const T*, const T*, const T*, T*, T*, T*,  \
                                  int64_t, int);
SPINFORCE_DESCRIPTOR_INSTANTIATE(float)
SPINFORCE_DESCRIPTOR_INSTANTIATE(double)
#undef SPINFORCE_DESCRIPTOR_INSTANTIATE

}  // namespace kernels
}  // namespace descriptors
}  // namespace spinforce

#ifndef SPINFORCE_CUDA_CHECK_ONLY
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "descriptors/invariants_ops.hpp"
#include "descriptors/spin_variables_ops.hpp"

namespace spinforce {
namespace descriptors {
namespace {

// (N, ...) per-site rows -> (width, N) contiguous: a copy unless t is already a feature-major view.
at::Tensor feature_major(const at::Tensor& t) {
  int64_t width = 1;
  for (int64_t d = 1; d < t.dim(); ++d) width *= t.size(d);
  return t.reshape({t.size(0), width}).t().contiguous();
}

// A feature-major buffer (width, N) seen as the (N, sizes...) tensor the op returns.
at::Tensor site_view(const at::Tensor& buffer, at::IntArrayRef sizes) { return buffer.t().view(sizes); }

at::Tensor variables_cuda(const at::Tensor& patch_in, const at::Tensor& pairs_in, const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  const at::Tensor patch = feature_major(patch_in), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const int64_t N = patch_in.size(0), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor out = at::empty({nb + nt, N}, patch.options());
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_cuda", [&] {
    kernels::variables<scalar_t>(patch.data_ptr<scalar_t>(), N, pairs.data_ptr<int64_t>(), nb,
                                 triangles.data_ptr<int64_t>(), nt, out.data_ptr<scalar_t>(), patch_in.get_device());
  });
  return site_view(out, {N, nb + nt});
}

at::Tensor variables_backward_cuda(const at::Tensor& grad_in, const at::Tensor& patch_in, const at::Tensor& pairs_in,
                                   const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  check_same(grad_in, patch_in, "grad", pairs_in.size(0) + triangles_in.size(0));
  const at::Tensor patch = feature_major(patch_in), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const at::Tensor grad = feature_major(grad_in);
  const int64_t N = patch_in.size(0), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor grad_patch = at::zeros_like(patch);
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_backward_cuda", [&] {
    kernels::variables_vjp<scalar_t>(patch.data_ptr<scalar_t>(), N, pairs.data_ptr<int64_t>(), nb,
                                     triangles.data_ptr<int64_t>(), nt, grad.data_ptr<scalar_t>(),
                                     grad_patch.data_ptr<scalar_t>(), patch_in.get_device());
  });
  return site_view(grad_patch, patch_in.sizes());
}

std::tuple<at::Tensor, at::Tensor> variables_double_backward_cuda(const at::Tensor& u_in, const at::Tensor& grad_in,
                                                                  const at::Tensor& patch_in,
                                                                  const at::Tensor& pairs_in,
                                                                  const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  check_same(grad_in, patch_in, "grad", pairs_in.size(0) + triangles_in.size(0));
  check_same(u_in, patch_in, "u", -1);
  const at::Tensor patch = feature_major(patch_in), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const at::Tensor grad = feature_major(grad_in), u = feature_major(u_in);
  const int64_t N = patch_in.size(0), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor jvp = at::empty({nb + nt, N}, patch.options());
  at::Tensor hvp = at::zeros_like(patch);
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_double_backward_cuda", [&] {
    kernels::variables_second<scalar_t>(patch.data_ptr<scalar_t>(), N, pairs.data_ptr<int64_t>(), nb,
                                        triangles.data_ptr<int64_t>(), nt, grad.data_ptr<scalar_t>(),
                                        u.data_ptr<scalar_t>(), jvp.data_ptr<scalar_t>(), hvp.data_ptr<scalar_t>(),
                                        patch_in.get_device());
  });
  return {site_view(jvp, {N, nb + nt}), site_view(hvp, patch_in.sizes())};
}

at::Tensor invariants_cuda(const at::Tensor& c_in, const at::Tensor& rho_in, at::TensorList plan,
                           at::IntArrayRef sizes, double floor_sq) {
  std::vector<at::Tensor> plan_tensors;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, plan_tensors);
  const at::Tensor c = feature_major(c_in), rho = feature_major(rho_in);
  const int64_t N = c_in.size(0);
  at::Tensor out = at::empty({p.num_outputs(), N}, c.options());
  at::Tensor scratch = at::empty({p.num_scratch(), N}, c.options());
  const double* coef = plan_tensors[kKappaCoef].data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants_cuda", [&] {
    kernels::invariants<scalar_t>(p, coef, static_cast<scalar_t>(floor_sq),
                                  c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                  scratch.data_ptr<scalar_t>(), N, c_in.get_device());
  });
  return site_view(out, {N, p.num_outputs()});
}

std::tuple<at::Tensor, at::Tensor> invariants_backward_cuda(const at::Tensor& grad_in, const at::Tensor& c_in,
                                                            const at::Tensor& rho_in, at::TensorList plan,
                                                            at::IntArrayRef sizes, double floor_sq) {
  std::vector<at::Tensor> plan_tensors;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, plan_tensors);
  check_same(grad_in, c_in, "grad", p.num_outputs(), "c");
  const at::Tensor c = feature_major(c_in), rho = feature_major(rho_in), grad = feature_major(grad_in);
  const int64_t N = c_in.size(0);
  at::Tensor grad_c = at::empty_like(c), grad_rho = at::empty_like(rho);
  at::Tensor scratch = at::empty({p.num_scratch(), N}, c.options());
  const double* coef = plan_tensors[kKappaCoef].data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants_backward_cuda", [&] {
    kernels::invariants_vjp<scalar_t>(p, coef, static_cast<scalar_t>(floor_sq),
                                      c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                      grad_c.data_ptr<scalar_t>(), grad_rho.data_ptr<scalar_t>(),
                                      scratch.data_ptr<scalar_t>(), N, c_in.get_device());
  });
  return {site_view(grad_c, c_in.sizes()), site_view(grad_rho, rho_in.sizes())};
}

}  // namespace
}  // namespace descriptors
}  // namespace spinforce

TORCH_LIBRARY_IMPL(spinforce, CUDA, m) {
  m.impl("descriptor_invariants", &spinforce::descriptors::invariants_cuda);
  m.impl("descriptor_invariants_backward", &spinforce::descriptors::invariants_backward_cuda);
  m.impl("local_spin_variables", &spinforce::descriptors::variables_cuda);
  m.impl("local_spin_variables_backward", &spinforce::descriptors::variables_backward_cuda);
  m.impl("local_spin_variables_double_backward", &spinforce::descriptors::variables_double_backward_cuda);
}
#endif  // SPINFORCE_CUDA_CHECK_ONLY
