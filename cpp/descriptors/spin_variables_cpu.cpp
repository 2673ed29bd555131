// CPU (OpenMP) kernels of the local spin-variable ops and the op schemas. Only the light
// torch headers here: the autograd glue lives in spin_variables_autograd.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

#include "descriptors/spin_variables.hpp"
#include "descriptors/spin_variables_ops.hpp"

namespace spinforce {
namespace descriptors {

void check_variables_args(const at::Tensor& patch, const at::Tensor& pairs, const at::Tensor& triangles) {
  TORCH_CHECK_VALUE(patch.dim() == 3 && patch.size(2) == 3 && patch.size(1) >= 1,
                    "patch must have shape (N, M, 3) with M >= 1, got ", patch.sizes());
  TORCH_CHECK_VALUE(patch.scalar_type() == at::kFloat || patch.scalar_type() == at::kDouble,
                    "patch must be float32 or float64, got ", patch.scalar_type());
  TORCH_CHECK_VALUE(pairs.dim() == 2 && pairs.size(1) == 2 && pairs.scalar_type() == at::kLong,
                    "pairs must be an int64 tensor of shape (nb, 2), got ", pairs.scalar_type(), " ", pairs.sizes());
  TORCH_CHECK_VALUE(triangles.dim() == 2 && triangles.size(1) == 3 && triangles.scalar_type() == at::kLong,
                    "triangles must be an int64 tensor of shape (nt, 3), got ", triangles.scalar_type(), " ",
                    triangles.sizes());
  TORCH_CHECK_VALUE(pairs.device() == patch.device() && triangles.device() == patch.device(),
                    "pairs and triangles must live on the device of patch (", patch.device(), ")");
  if (patch.device().is_cpu()) {
    const int64_t M = patch.size(1);
    for (const at::Tensor* t : {&pairs, &triangles}) {
      if (t->numel() == 0) continue;
      const int64_t lo = t->min().item<int64_t>(), hi = t->max().item<int64_t>();
      TORCH_CHECK_VALUE(lo >= 0 && hi < M, t == &pairs ? "pairs" : "triangles",
                        " entries must lie in [0, M) = [0, ", M, "), got values in [", lo, ", ", hi, "]");
    }
  }
}

void check_same(const at::Tensor& t, const at::Tensor& like, const char* name, int64_t last_dim,
                const char* like_name) {
  TORCH_CHECK_VALUE(t.scalar_type() == like.scalar_type() && t.device() == like.device(), name,
                    " must have the dtype and device of ", like_name);
  if (last_dim >= 0) {
    TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == like.size(0) && t.size(1) == last_dim, name,
                      " must have shape (", like.size(0), ", ", last_dim, "), got ", t.sizes());
  } else {
    TORCH_CHECK_VALUE(t.sizes() == like.sizes(), name, " must have the shape of ", like_name, " ", like.sizes(),
                      ", got ", t.sizes());
  }
}

namespace {

// Below this many sites a thread team costs more than it saves.
constexpr int64_t kMinSitesPerThreadTeam = 64;

// The OpenMP site loops (a pragma cannot sit inside the dispatch macro's lambda argument).
template <class T>
void forward_loop(const T* s, int64_t N, int64_t M, const int64_t* pr, int64_t nb, const int64_t* tr, int64_t nt,
                  T* o) {
#pragma omp parallel for schedule(static) if (N >= kMinSitesPerThreadTeam)
  for (int64_t i = 0; i < N; ++i) site_variables(s + 3 * M * i, pr, nb, tr, nt, o + (nb + nt) * i);
}

template <class T>
void vjp_loop(const T* s, int64_t N, int64_t M, const int64_t* pr, int64_t nb, const int64_t* tr, int64_t nt,
              const T* g, T* gp) {
#pragma omp parallel for schedule(static) if (N >= kMinSitesPerThreadTeam)
  for (int64_t i = 0; i < N; ++i) site_variables_vjp(s + 3 * M * i, pr, nb, tr, nt, g + (nb + nt) * i, gp + 3 * M * i);
}

template <class T>
void second_loop(const T* s, int64_t N, int64_t M, const int64_t* pr, int64_t nb, const int64_t* tr, int64_t nt,
                 const T* g, const T* u, T* j, T* h) {
#pragma omp parallel for schedule(static) if (N >= kMinSitesPerThreadTeam)
  for (int64_t i = 0; i < N; ++i)
    site_variables_second(s + 3 * M * i, pr, nb, tr, nt, g + (nb + nt) * i, u + 3 * M * i, j + (nb + nt) * i,
                          h + 3 * M * i);
}

at::Tensor variables_cpu(const at::Tensor& patch_in, const at::Tensor& pairs_in, const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  const at::Tensor patch = patch_in.contiguous(), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const int64_t N = patch.size(0), M = patch.size(1), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor out = at::empty({N, nb + nt}, patch.options());
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables", [&] {
    forward_loop(patch.data_ptr<scalar_t>(), N, M, pairs.data_ptr<int64_t>(), nb, triangles.data_ptr<int64_t>(), nt,
                 out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor variables_backward_cpu(const at::Tensor& grad_in, const at::Tensor& patch_in, const at::Tensor& pairs_in,
                                  const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  check_same(grad_in, patch_in, "grad", pairs_in.size(0) + triangles_in.size(0));
  const at::Tensor patch = patch_in.contiguous(), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  const int64_t N = patch.size(0), M = patch.size(1), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor grad_patch = at::zeros_like(patch);
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_backward", [&] {
    vjp_loop(patch.data_ptr<scalar_t>(), N, M, pairs.data_ptr<int64_t>(), nb, triangles.data_ptr<int64_t>(), nt,
             grad.data_ptr<scalar_t>(), grad_patch.data_ptr<scalar_t>());
  });
  return grad_patch;
}

std::tuple<at::Tensor, at::Tensor> variables_double_backward_cpu(const at::Tensor& u_in, const at::Tensor& grad_in,
                                                                 const at::Tensor& patch_in, const at::Tensor& pairs_in,
                                                                 const at::Tensor& triangles_in) {
  check_variables_args(patch_in, pairs_in, triangles_in);
  check_same(grad_in, patch_in, "grad", pairs_in.size(0) + triangles_in.size(0));
  check_same(u_in, patch_in, "u", -1);
  const at::Tensor patch = patch_in.contiguous(), pairs = pairs_in.contiguous(), triangles = triangles_in.contiguous();
  const at::Tensor grad = grad_in.contiguous(), u = u_in.contiguous();
  const int64_t N = patch.size(0), M = patch.size(1), nb = pairs.size(0), nt = triangles.size(0);
  at::Tensor jvp = at::empty({N, nb + nt}, patch.options());
  at::Tensor hvp = at::zeros_like(patch);
  AT_DISPATCH_FLOATING_TYPES(patch.scalar_type(), "local_spin_variables_double_backward", [&] {
    second_loop(patch.data_ptr<scalar_t>(), N, M, pairs.data_ptr<int64_t>(), nb, triangles.data_ptr<int64_t>(), nt,
                grad.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), jvp.data_ptr<scalar_t>(), hvp.data_ptr<scalar_t>());
  });
  return {jvp, hvp};
}

// Shape-only kernels (meta tensors: torch.export, fake-tensor tracing).
at::Tensor variables_meta(const at::Tensor& patch, const at::Tensor& pairs, const at::Tensor& triangles) {
  return at::empty({patch.size(0), pairs.size(0) + triangles.size(0)}, patch.options());
}

at::Tensor variables_backward_meta(const at::Tensor&, const at::Tensor& patch, const at::Tensor&, const at::Tensor&) {
  return at::empty_like(patch);
}

std::tuple<at::Tensor, at::Tensor> variables_double_backward_meta(const at::Tensor&, const at::Tensor& grad,
                                                                  const at::Tensor& patch, const at::Tensor&,
                                                                  const at::Tensor&) {
  return {at::empty_like(grad), at::empty_like(patch)};
}

}  // namespace
}  // namespace descriptors
}  // namespace spinforce

// The one TORCH_LIBRARY block of the spinforce namespace; other topics add their ops with
// TORCH_LIBRARY_FRAGMENT(spinforce, m).
TORCH_LIBRARY(spinforce, m) {
  m.def("local_spin_variables(Tensor patch, Tensor pairs, Tensor triangles) -> Tensor");
  m.def("local_spin_variables_backward(Tensor grad, Tensor patch, Tensor pairs, Tensor triangles) -> Tensor");
  m.def(
      "local_spin_variables_double_backward(Tensor u, Tensor grad, Tensor patch, Tensor pairs, Tensor triangles)"
      " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(spinforce, CPU, m) {
  m.impl("local_spin_variables", &spinforce::descriptors::variables_cpu);
  m.impl("local_spin_variables_backward", &spinforce::descriptors::variables_backward_cpu);
  m.impl("local_spin_variables_double_backward", &spinforce::descriptors::variables_double_backward_cpu);
}

TORCH_LIBRARY_IMPL(spinforce, Meta, m) {
  m.impl("local_spin_variables", &spinforce::descriptors::variables_meta);
  m.impl("local_spin_variables_backward", &spinforce::descriptors::variables_backward_meta);
  m.impl("local_spin_variables_double_backward", &spinforce::descriptors::variables_double_backward_meta);
}
