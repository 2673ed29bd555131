#pragma once
// The spinforce::local_spin_variables op family: validation shared by the CPU and CUDA kernels.
//   local_spin_variables(patch (N,M,3), pairs (nb,2), triangles (nt,3)) -> (N, nb + nt)
//     out[i, v] = S_p . S_q for bond v = (p, q), S_a . (S_b x S_c) for triangle (a, b, c),
//     indices are patch rows (0 = the site itself).
//   local_spin_variables_backward(grad (N, nb+nt), patch, pairs, triangles) -> grad_patch (N,M,3)
//   local_spin_variables_double_backward(u (N,M,3), grad, patch, pairs, triangles)
//     -> (jvp (N, nb+nt), hvp (N,M,3)): the two gradients of <u, grad_patch>.
#include <ATen/core/Tensor.h>

namespace spinforce {
namespace descriptors {

// Raises ValueError (c10::ValueError) on wrong shapes, dtypes or devices. With check_indices
// (CPU tensors) also the index ranges are checked; on CUDA that would need a device sync.
void check_variables_args(const at::Tensor& patch, const at::Tensor& pairs, const at::Tensor& triangles);
// t must have the dtype and device of `like` and shape (like.size(0), last_dim), or like's shape
// when last_dim < 0.
void check_same(const at::Tensor& t, const at::Tensor& like, const char* name, int64_t last_dim,
                const char* like_name = "patch");

}  // namespace descriptors
}  // namespace spinforce
