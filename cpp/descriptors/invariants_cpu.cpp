// CPU (OpenMP) kernels of the descriptor-invariant ops. Light torch headers only; autograd in
// invariants_autograd.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "descriptors/invariants.hpp"
#include "descriptors/invariants_ops.hpp"
#include "descriptors/spin_variables_ops.hpp"

namespace spinforce {
namespace descriptors {

namespace {

// The length a plan tensor must have and the size of the array its entries index (0: it holds
// coefficients, not indices).
struct PlanExtent {
  int64_t length;
  int64_t index_bound;
};

PlanExtent plan_extent(PlanTensor k, const InvariantPlan& p) {
  switch (k) {
    case kNormOf: return {p.num_rho_entries, p.num_norm_groups};
    case kEntryOf: return {p.num_c_entries, p.num_power_features};
    case kPhaseR: return {p.num_c_entries, p.num_rho_entries};
    case kPhaseNorm: return {p.num_power_features, p.num_norm_groups};
    case kKappaR1:
    case kKappaR2: return {p.num_kappa_terms, p.num_rho_entries};
    case kKappaN1:
    case kKappaN2: return {p.num_kappa_terms, p.num_norm_groups};
    case kKappaOf: return {p.num_kappa_terms, p.num_kappa_entries};
    case kBisC: return {p.num_bispectrum_terms, p.num_c_entries};
    case kBisK: return {p.num_bispectrum_terms, p.num_kappa_entries};
    case kBisOf: return {p.num_bispectrum_terms, p.num_bispectrum_features};
    case kKappaCoef: return {p.num_kappa_terms, 0};
    case kNumPlanTensors: break;
  }
  TORCH_CHECK(false, "no plan tensor ", static_cast<int64_t>(k));
}

constexpr const char* kSizesMessage =
    "sizes must be (num_norm_groups, num_power_features, num_kappa_entries, num_bispectrum_features)";

std::string plan_tensor_list() {
  std::string names;
  for (int64_t k = 0; k < kNumPlanTensors; ++k) names += (k ? ", " : "") + std::string(kPlanTensorNames[k]);
  return names;
}

}  // namespace

InvariantPlan make_invariant_plan(const at::Tensor& c, const at::Tensor& rho, at::TensorList plan,
                                  at::IntArrayRef sizes, std::vector<at::Tensor>& plan_tensors) {
  TORCH_CHECK_VALUE(c.dim() == 2 && rho.dim() == 2 && c.size(0) == rho.size(0),
                    "c and rho must have shapes (N, num_c_entries) and (N, num_rho_entries), got ", c.sizes(),
                    " and ", rho.sizes());
  TORCH_CHECK_VALUE(c.scalar_type() == rho.scalar_type() && c.device() == rho.device() &&
                        (c.scalar_type() == at::kFloat || c.scalar_type() == at::kDouble),
                    "c and rho must be float32 or float64 tensors of one dtype and device");
  TORCH_CHECK_VALUE(static_cast<int64_t>(plan.size()) == kNumPlanTensors, "plan must hold ", kNumPlanTensors,
                    " tensors (", plan_tensor_list(), "), got ", plan.size());
  TORCH_CHECK_VALUE(sizes.size() == 4, kSizesMessage);
  plan_tensors.clear();
  for (int64_t k = 0; k < kNumPlanTensors; ++k) {
    const at::ScalarType want = k == kKappaCoef ? at::kDouble : at::kLong;
    TORCH_CHECK_VALUE(plan[k].dim() == 1 && plan[k].scalar_type() == want && plan[k].device() == c.device(),
                      "plan[", k, "] (", kPlanTensorNames[k], ") must be a 1-d ", want, " tensor on ", c.device(),
                      ", got a ", plan[k].dim(), "-d ", plan[k].scalar_type(), " tensor on ", plan[k].device());
    plan_tensors.push_back(plan[k].contiguous());
  }
  InvariantPlan p{};
  p.num_c_entries = c.size(1);
  p.num_rho_entries = rho.size(1);
  p.num_norm_groups = sizes[0];
  p.num_power_features = sizes[1];
  p.num_kappa_entries = sizes[2];
  p.num_bispectrum_features = sizes[3];
  p.num_kappa_terms = plan_tensors[kKappaOf].numel();
  p.num_bispectrum_terms = plan_tensors[kBisOf].numel();
  for (int64_t k = 0; k < kNumPlanTensors; ++k) {
    const PlanExtent extent = plan_extent(static_cast<PlanTensor>(k), p);
    TORCH_CHECK_VALUE(plan_tensors[k].numel() == extent.length, "plan[", k, "] (", kPlanTensorNames[k], ") has ",
                      plan_tensors[k].numel(), " entries, expected ", extent.length, " for c with ",
                      p.num_c_entries, " and rho with ", p.num_rho_entries, " entries per site");
  }
  if (c.device().is_cpu()) {
    // Every index must fall inside the array it addresses.
    for (int64_t k = 0; k < kNumPlanTensors; ++k) {
      const int64_t bound = plan_extent(static_cast<PlanTensor>(k), p).index_bound;
      if (bound == 0 || plan_tensors[k].numel() == 0) continue;
      const int64_t lo = plan_tensors[k].min().item<int64_t>(), hi = plan_tensors[k].max().item<int64_t>();
      TORCH_CHECK_VALUE(lo >= 0 && hi < bound, "plan[", k, "] (", kPlanTensorNames[k], ") entries must lie in [0, ",
                        bound, ")");
    }
  }
  p.norm_of = plan_tensors[kNormOf].data_ptr<int64_t>();
  p.entry_of = plan_tensors[kEntryOf].data_ptr<int64_t>();
  p.phase_r = plan_tensors[kPhaseR].data_ptr<int64_t>();
  p.phase_norm = plan_tensors[kPhaseNorm].data_ptr<int64_t>();
  p.kappa_r1 = plan_tensors[kKappaR1].data_ptr<int64_t>();
  p.kappa_r2 = plan_tensors[kKappaR2].data_ptr<int64_t>();
  p.kappa_n1 = plan_tensors[kKappaN1].data_ptr<int64_t>();
  p.kappa_n2 = plan_tensors[kKappaN2].data_ptr<int64_t>();
  p.kappa_of = plan_tensors[kKappaOf].data_ptr<int64_t>();
  p.bis_c = plan_tensors[kBisC].data_ptr<int64_t>();
  p.bis_k = plan_tensors[kBisK].data_ptr<int64_t>();
  p.bis_of = plan_tensors[kBisOf].data_ptr<int64_t>();
  return p;
}

namespace {

constexpr int64_t kMinSitesPerThreadTeam = 64;

template <class T>
void invariants_loop(const InvariantPlan& p, const double* coef, T floor_sq, const T* c, const T* rho, T* out,
                     int64_t N) {
#pragma omp parallel if (N >= kMinSitesPerThreadTeam)
  {
    std::vector<T> scratch(p.num_scratch());
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i)
      site_invariants(p, coef, floor_sq, c + p.num_c_entries * i, rho + p.num_rho_entries * i,
                      out + p.num_outputs() * i, scratch.data());
  }
}

template <class T>
void invariants_vjp_loop(const InvariantPlan& p, const double* coef, T floor_sq, const T* c, const T* rho,
                         const T* grad, T* grad_c, T* grad_rho, int64_t N) {
#pragma omp parallel if (N >= kMinSitesPerThreadTeam)
  {
    std::vector<T> scratch(p.num_scratch());
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i)
      site_invariants_vjp(p, coef, floor_sq, c + p.num_c_entries * i, rho + p.num_rho_entries * i,
                          grad + p.num_outputs() * i, grad_c + p.num_c_entries * i, grad_rho + p.num_rho_entries * i,
                          scratch.data());
  }
}

at::Tensor invariants_cpu(const at::Tensor& c_in, const at::Tensor& rho_in, at::TensorList plan, at::IntArrayRef sizes,
                          double floor_sq) {
  std::vector<at::Tensor> plan_tensors;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, plan_tensors);
  const at::Tensor c = c_in.contiguous(), rho = rho_in.contiguous();
  const int64_t N = c.size(0);
  at::Tensor out = at::empty({N, p.num_outputs()}, c.options());
  const double* coef = plan_tensors[kKappaCoef].data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants", [&] {
    invariants_loop<scalar_t>(p, coef, static_cast<scalar_t>(floor_sq),
                              c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> invariants_backward_cpu(const at::Tensor& grad_in, const at::Tensor& c_in,
                                                           const at::Tensor& rho_in, at::TensorList plan,
                                                           at::IntArrayRef sizes, double floor_sq) {
  std::vector<at::Tensor> plan_tensors;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, plan_tensors);
  check_same(grad_in, c_in, "grad", p.num_outputs(), "c");
  const at::Tensor c = c_in.contiguous(), rho = rho_in.contiguous(), grad = grad_in.contiguous();
  const int64_t N = c.size(0);
  at::Tensor grad_c = at::empty_like(c), grad_rho = at::empty_like(rho);
  const double* coef = plan_tensors[kKappaCoef].data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants_backward", [&] {
    invariants_vjp_loop<scalar_t>(p, coef, static_cast<scalar_t>(floor_sq),
                                  c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                  grad_c.data_ptr<scalar_t>(), grad_rho.data_ptr<scalar_t>(), N);
  });
  return {grad_c, grad_rho};
}

at::Tensor invariants_meta(const at::Tensor& c, const at::Tensor&, at::TensorList, at::IntArrayRef sizes, double) {
  TORCH_CHECK_VALUE(sizes.size() == 4, kSizesMessage);
  return at::empty({c.size(0), 2 * sizes[1] + sizes[3]}, c.options());
}

std::tuple<at::Tensor, at::Tensor> invariants_backward_meta(const at::Tensor&, const at::Tensor& c,
                                                            const at::Tensor& rho, at::TensorList, at::IntArrayRef,
                                                            double) {
  return {at::empty_like(c), at::empty_like(rho)};
}

}  // namespace
}  // namespace descriptors
}  // namespace spinforce

TORCH_LIBRARY_FRAGMENT(spinforce, m) {
  m.def("descriptor_invariants(Tensor c, Tensor rho, Tensor[] plan, int[] sizes, float floor_sq) -> Tensor");
  m.def(
      "descriptor_invariants_backward(Tensor grad, Tensor c, Tensor rho, Tensor[] plan, int[] sizes, float floor_sq)"
      " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(spinforce, CPU, m) {
  m.impl("descriptor_invariants", &spinforce::descriptors::invariants_cpu);
  m.impl("descriptor_invariants_backward", &spinforce::descriptors::invariants_backward_cpu);
}

TORCH_LIBRARY_IMPL(spinforce, Meta, m) {
  m.impl("descriptor_invariants", &spinforce::descriptors::invariants_meta);
  m.impl("descriptor_invariants_backward", &spinforce::descriptors::invariants_backward_meta);
}
