#pragma once
// The spinforce::descriptor_invariants op family (see invariants.hpp for the formulas):
//   descriptor_invariants(c (N,E), rho (N,R), plan Tensor[13], sizes int[4] = (G, P, K, B), floor_sq)
//     -> (N, 2P + B): power spectrum, phases, bispectrum of every site
//   descriptor_invariants_backward(grad (N, 2P+B), c, rho, plan, sizes, floor_sq) -> (grad_c, grad_rho)
// plan = [norm_of, entry_of, phase_r, phase_norm, kappa_r1, kappa_r2, kappa_n1, kappa_n2, kappa_of,
//         bis_c, bis_k, bis_of] (int64) + [kappa_coef] (float64), all on the device of c.
#include <ATen/core/Tensor.h>

#include <vector>

#include "descriptors/invariants.hpp"

namespace spinforce {
namespace descriptors {

constexpr int64_t kPlanTensors = 13;

// Validates the arguments (ValueError) and returns the plan over contiguous tensors kept in `hold`.
InvariantPlan make_invariant_plan(const at::Tensor& c, const at::Tensor& rho, at::TensorList plan,
                                  at::IntArrayRef sizes, std::vector<at::Tensor>& hold);

}  // namespace descriptors
}  // namespace spinforce
