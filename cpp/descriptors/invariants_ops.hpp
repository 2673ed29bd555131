#pragma once
// The spinforce::descriptor_invariants op family (see invariants.hpp for the formulas):
//   descriptor_invariants(c (N, num_c_entries), rho (N, num_rho_entries), plan Tensor[kNumPlanTensors],
//                         sizes int[4], floor_sq) -> (N, 2 num_power_features + num_bispectrum_features):
//     power spectrum, phases, bispectrum of every site
//   descriptor_invariants_backward(grad, c, rho, plan, sizes, floor_sq) -> (grad_c, grad_rho)
// sizes = (num_norm_groups, num_power_features, num_kappa_entries, num_bispectrum_features).
// plan holds the tensors named by PlanTensor, in that order, all on the device of c: the index
// tables of InvariantPlan (int64) and kappa_coef (float64). Python builds the list from
// kPlanTensorNames (spinforce._core.invariant_plan_tensors), so the order is declared here alone.
#include <ATen/core/Tensor.h>

#include <vector>

#include "descriptors/invariants.hpp"

namespace spinforce {
namespace descriptors {

enum PlanTensor : int64_t {
  kNormOf,
  kEntryOf,
  kPhaseR,
  kPhaseNorm,
  kKappaR1,
  kKappaR2,
  kKappaN1,
  kKappaN2,
  kKappaOf,
  kBisC,
  kBisK,
  kBisOf,
  kKappaCoef,  // (num_kappa_terms) float64 coefficient of each kappa term
  kNumPlanTensors
};

// Indexed by PlanTensor: the names of the InvariantPlan fields and of the Descriptor buffers.
inline constexpr const char* kPlanTensorNames[kNumPlanTensors] = {
    "norm_of",  "entry_of", "phase_r", "phase_norm", "kappa_r1", "kappa_r2",  "kappa_n1",
    "kappa_n2", "kappa_of", "bis_c",   "bis_k",      "bis_of",   "kappa_coef"};

// Validates the arguments (ValueError naming the plan tensor at fault) and returns the plan over
// the contiguous tensors kept in `plan_tensors` (indexed by PlanTensor).
InvariantPlan make_invariant_plan(const at::Tensor& c, const at::Tensor& rho, at::TensorList plan,
                                  at::IntArrayRef sizes, std::vector<at::Tensor>& plan_tensors);

}  // namespace descriptors
}  // namespace spinforce
