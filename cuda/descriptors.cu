// CUDA kernels of the local spin-variable ops (see cpp/descriptors/spin_variables_ops.hpp).
// One thread per site runs the per-site arithmetic shared with the CPU loops
// (cpp/descriptors/spin_variables.hpp). The ATen glue is compiled only inside the extension;
// the torch-free compile check (cuda/CMakeLists.txt) builds the kernels and launchers alone.
#include <cstdint>

#include "descriptors/invariants.hpp"
#include "descriptors/spin_variables.hpp"

namespace spinforce {
namespace descriptors {
namespace cuda {

constexpr int kThreads = 128;

template <class T>
__global__ void variables_kernel(const T* patch, int64_t N, int64_t M, const int64_t* pairs, int64_t nb,
                                 const int64_t* triangles, int64_t nt, T* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N) site_variables(patch + 3 * M * i, pairs, nb, triangles, nt, out + (nb + nt) * i);
}

template <class T>
__global__ void vjp_kernel(const T* patch, int64_t N, int64_t M, const int64_t* pairs, int64_t nb,
                           const int64_t* triangles, int64_t nt, const T* grad, T* grad_patch) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N) site_variables_vjp(patch + 3 * M * i, pairs, nb, triangles, nt, grad + (nb + nt) * i, grad_patch + 3 * M * i);
}

template <class T>
__global__ void second_kernel(const T* patch, int64_t N, int64_t M, const int64_t* pairs, int64_t nb,
                              const int64_t* triangles, int64_t nt, const T* grad, const T* u, T* jvp, T* hvp) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N)
    site_variables_second(patch + 3 * M * i, pairs, nb, triangles, nt, grad + (nb + nt) * i, u + 3 * M * i,
                          jvp + (nb + nt) * i, hvp + 3 * M * i);
}

inline unsigned blocks_for(int64_t N) { return static_cast<unsigned>((N + kThreads - 1) / kThreads); }

// Raw-pointer launchers on `stream` (a cudaStream_t). grad_patch and hvp must be zeroed.
template <class T>
void launch_variables(const T* patch, int64_t N, int64_t M, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                      int64_t nt, T* out, cudaStream_t stream) {
  if (N > 0) variables_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(patch, N, M, pairs, nb, triangles, nt, out);
}

template <class T>
void launch_vjp(const T* patch, int64_t N, int64_t M, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                int64_t nt, const T* grad, T* grad_patch, cudaStream_t stream) {
  if (N > 0)
    vjp_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(patch, N, M, pairs, nb, triangles, nt, grad, grad_patch);
}

template <class T>
void launch_second(const T* patch, int64_t N, int64_t M, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                   int64_t nt, const T* grad, const T* u, T* jvp, T* hvp, cudaStream_t stream) {
  if (N > 0)
    second_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(patch, N, M, pairs, nb, triangles, nt, grad, u, jvp, hvp);
}

template void launch_variables<float>(const float*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*, int64_t,
                                      float*, cudaStream_t);
template void launch_variables<double>(const double*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*,
                                       int64_t, double*, cudaStream_t);
template void launch_vjp<float>(const float*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*, int64_t,
                                const float*, float*, cudaStream_t);
template void launch_vjp<double>(const double*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*, int64_t,
                                 const double*, double*, cudaStream_t);
template void launch_second<float>(const float*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*, int64_t,
                                   const float*, const float*, float*, float*, cudaStream_t);
template void launch_second<double>(const double*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*, int64_t,
                                    const double*, const double*, double*, double*, cudaStream_t);

// Descriptor invariants: one thread per site, per-site scratch rows of a global buffer.
template <class T>
__global__ void invariants_kernel(InvariantPlan p, const double* coef, T floor_sq, const T* c, const T* rho, T* out,
                                  T* scratch, int64_t N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N)
    site_invariants(p, coef, floor_sq, c + p.E * i, rho + p.R * i, out + p.num_outputs() * i,
                    scratch + p.num_scratch() * i);
}

template <class T>
__global__ void invariants_vjp_kernel(InvariantPlan p, const double* coef, T floor_sq, const T* c, const T* rho,
                                      const T* grad, T* grad_c, T* grad_rho, T* scratch, int64_t N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N)
    site_invariants_vjp(p, coef, floor_sq, c + p.E * i, rho + p.R * i, grad + p.num_outputs() * i, grad_c + p.E * i,
                        grad_rho + p.R * i, scratch + p.num_scratch() * i);
}

// scratch: N * p.num_scratch() values.
template <class T>
void launch_invariants(const InvariantPlan& p, const double* coef, T floor_sq, const T* c, const T* rho, T* out,
                       T* scratch, int64_t N, cudaStream_t stream) {
  if (N > 0) invariants_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(p, coef, floor_sq, c, rho, out, scratch, N);
}

template <class T>
void launch_invariants_vjp(const InvariantPlan& p, const double* coef, T floor_sq, const T* c, const T* rho,
                           const T* grad, T* grad_c, T* grad_rho, T* scratch, int64_t N, cudaStream_t stream) {
  if (N > 0)
    invariants_vjp_kernel<T>
        <<<blocks_for(N), kThreads, 0, stream>>>(p, coef, floor_sq, c, rho, grad, grad_c, grad_rho, scratch, N);
}

template void launch_invariants<float>(const InvariantPlan&, const double*, float, const float*, const float*, float*,
                                       float*, int64_t, cudaStream_t);
template void launch_invariants<double>(const InvariantPlan&, const double*, double, const double*, const double*,
                                        double*, double*, int64_t, cudaStream_t);
template void launch_invariants_vjp<float>(const InvariantPlan&, const double*, float, const float*, const float*,
                                           const float*, float*, float*, float*, int64_t, cudaStream_t);
template void launch_invariants_vjp<double>(const InvariantPlan&, const double*, double, const double*, const double*,
                                            const double*, double*, double*, double*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace descriptors
}  // namespace spinforce

#ifndef SPINFORCE_CUDA_CHECK_ONLY
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "descriptors/invariants_ops.hpp"
#include "descriptors/spin_variables_ops.hpp"

namespace spinforce {
namespace descriptors {
namespace {

at::Tensor variables_cuda(const at::Tensor& patch_in, const at::Tensor& pairs_in, const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  const c10::cuda::CUDAGuard guard(patch_in.device());
  const at::Tensor patch = patch_in.contiguous(), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const int64_t N = patch.size(0), M = patch.size(1), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor out = at::empty({N, nb + nt}, patch.options());
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_cuda", [&] {
    cuda::launch_variables<scalar_t>(patch.data_ptr<scalar_t>(), N, M, pairs.data_ptr<int64_t>(), nb,
                                     triangles.data_ptr<int64_t>(), nt, out.data_ptr<scalar_t>(),
                                     at::cuda::getCurrentCUDAStream());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor variables_backward_cuda(const at::Tensor& grad_in, const at::Tensor& patch_in, const at::Tensor& pairs_in,
                                   const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  check_same(grad_in, patch_in, "grad", pairs_in.size(0) + triangles_in.size(0));
  const c10::cuda::CUDAGuard guard(patch_in.device());
  const at::Tensor patch = patch_in.contiguous(), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  const int64_t N = patch.size(0), M = patch.size(1), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor grad_patch = at::zeros_like(patch);
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_backward_cuda", [&] {
    cuda::launch_vjp<scalar_t>(patch.data_ptr<scalar_t>(), N, M, pairs.data_ptr<int64_t>(), nb,
                               triangles.data_ptr<int64_t>(), nt, grad.data_ptr<scalar_t>(),
                               grad_patch.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_patch;
}

std::tuple<at::Tensor, at::Tensor> variables_double_backward_cuda(const at::Tensor& u_in, const at::Tensor& grad_in,
                                                                  const at::Tensor& patch_in,
                                                                  const at::Tensor& pairs_in,
                                                                  const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  check_same(grad_in, patch_in, "grad", pairs_in.size(0) + triangles_in.size(0));
  check_same(u_in, patch_in, "u", -1);
  const c10::cuda::CUDAGuard guard(patch_in.device());
  const at::Tensor patch = patch_in.contiguous(), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const at::Tensor grad = grad_in.contiguous(), u = u_in.contiguous();
  const int64_t N = patch.size(0), M = patch.size(1), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor jvp = at::empty({N, nb + nt}, patch.options());
  at::Tensor hvp = at::zeros_like(patch);
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_double_backward_cuda", [&] {
    cuda::launch_second<scalar_t>(patch.data_ptr<scalar_t>(), N, M, pairs.data_ptr<int64_t>(), nb,
                                  triangles.data_ptr<int64_t>(), nt, grad.data_ptr<scalar_t>(),
                                  u.data_ptr<scalar_t>(), jvp.data_ptr<scalar_t>(), hvp.data_ptr<scalar_t>(),
                                  at::cuda::getCurrentCUDAStream());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {jvp, hvp};
}

at::Tensor invariants_cuda(const at::Tensor& c_in, const at::Tensor& rho_in, at::TensorList plan,
                           at::IntArrayRef sizes, double floor_sq) {
  std::vector<at::Tensor> hold;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, hold);
  const c10::cuda::CUDAGuard guard(c_in.device());
  const at::Tensor c = c_in.contiguous(), rho = rho_in.contiguous();
  const int64_t N = c.size(0);
  at::Tensor out = at::empty({N, p.num_outputs()}, c.options());
  at::Tensor scratch = at::empty({N, p.num_scratch()}, c.options());
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants_cuda", [&] {
    cuda::launch_invariants<scalar_t>(p, hold[12].data_ptr<double>(), static_cast<scalar_t>(floor_sq),
                                      c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                      scratch.data_ptr<scalar_t>(), N, at::cuda::getCurrentCUDAStream());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> invariants_backward_cuda(const at::Tensor& grad_in, const at::Tensor& c_in,
                                                            const at::Tensor& rho_in, at::TensorList plan,
                                                            at::IntArrayRef sizes, double floor_sq) {
  std::vector<at::Tensor> hold;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, hold);
  check_same(grad_in, c_in, "grad", p.num_outputs(), "c");
  const c10::cuda::CUDAGuard guard(c_in.device());
  const at::Tensor c = c_in.contiguous(), rho = rho_in.contiguous(), grad = grad_in.contiguous();
  const int64_t N = c.size(0);
  at::Tensor grad_c = at::empty_like(c), grad_rho = at::empty_like(rho);
  at::Tensor scratch = at::empty({N, p.num_scratch()}, c.options());
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants_backward_cuda", [&] {
    cuda::launch_invariants_vjp<scalar_t>(p, hold[12].data_ptr<double>(), static_cast<scalar_t>(floor_sq),
                                          c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                          grad_c.data_ptr<scalar_t>(), grad_rho.data_ptr<scalar_t>(),
                                          scratch.data_ptr<scalar_t>(), N, at::cuda::getCurrentCUDAStream());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_c, grad_rho};
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
