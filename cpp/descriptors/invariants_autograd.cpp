// Autograd of descriptor_invariants. The first derivative is the fused kernel
// descriptor_invariants_backward (the hot path of a force evaluation); its own derivative,
// needed only when training on forces, differentiates the ATen composite below, which states
// the same formulas as invariants.hpp and python/spinforce/descriptors/module.py.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "descriptors/invariants_ops.hpp"

namespace spinforce {
namespace descriptors {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd counts every tensor of a TensorList argument as one input: gradients for the
// differentiable leading arguments, then undefined ones for plan (kNumPlanTensors), sizes, floor_sq.
variable_list with_plan_slots(variable_list leading) {
  leading.resize(leading.size() + kNumPlanTensors + 2);
  return leading;
}

at::Tensor call_invariants(const at::Tensor& c, const at::Tensor& rho, at::TensorList plan, at::IntArrayRef sizes,
                           double floor_sq) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("spinforce::descriptor_invariants", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::TensorList, at::IntArrayRef,
                                         double)>();
  return op.call(c, rho, plan, sizes, floor_sq);
}

std::tuple<at::Tensor, at::Tensor> call_invariants_backward(const at::Tensor& grad, const at::Tensor& c,
                                                            const at::Tensor& rho, at::TensorList plan,
                                                            at::IntArrayRef sizes, double floor_sq) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("spinforce::descriptor_invariants_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, at::TensorList, at::IntArrayRef,
                                                                 double)>();
  return op.call(grad, c, rho, plan, sizes, floor_sq);
}

// The invariants as differentiable ATen operations (same layout as the fused kernel).
at::Tensor invariants_composite(const at::Tensor& c, const at::Tensor& rho, const std::vector<at::Tensor>& plan,
                                const std::vector<int64_t>& sizes, double floor_sq) {
  const int64_t n = c.size(0), num_norm_groups = sizes[0], num_power_features = sizes[1],
                num_kappa_entries = sizes[2], num_bispectrum_features = sizes[3];
  auto zeros = [&](int64_t k) { return at::zeros({n, k}, c.options()); };
  const at::Tensor norm = at::sqrt(zeros(num_norm_groups).index_add(1, plan[kNormOf], rho * rho) + floor_sq);
  const at::Tensor power = zeros(num_power_features).index_add(1, plan[kEntryOf], c * c);
  const at::Tensor phase =
      zeros(num_power_features).index_add(1, plan[kEntryOf], c * rho.index_select(1, plan[kPhaseR])) /
      norm.index_select(1, plan[kPhaseNorm]);
  const at::Tensor terms = rho.index_select(1, plan[kKappaR1]) * rho.index_select(1, plan[kKappaR2]) *
                           plan[kKappaCoef].to(c.scalar_type()) /
                           (norm.index_select(1, plan[kKappaN1]) * norm.index_select(1, plan[kKappaN2]));
  const at::Tensor kappa = zeros(num_kappa_entries).index_add(1, plan[kKappaOf], terms);
  const at::Tensor bis = zeros(num_bispectrum_features)
                             .index_add(1, plan[kBisOf],
                                        c.index_select(1, plan[kBisC]) * kappa.index_select(1, plan[kBisK]));
  return at::cat({power, phase, bis}, 1);
}

class InvariantsBackward : public torch::autograd::Function<InvariantsBackward> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& c,
                               const at::Tensor& rho, at::TensorList plan, at::IntArrayRef sizes, double floor_sq) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad, c, rho});
    ctx->saved_data["plan"] = plan.vec();
    ctx->saved_data["sizes"] = sizes.vec();
    ctx->saved_data["floor_sq"] = floor_sq;
    auto [grad_c, grad_rho] = call_invariants_backward(grad, c, rho, plan, sizes, floor_sq);
    return {grad_c, grad_rho};
  }

  // Gradients of <u_c, grad_c> + <u_rho, grad_rho> with respect to grad, c and rho.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto plan = ctx->saved_data["plan"].toTensorVector();
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const double floor_sq = ctx->saved_data["floor_sq"].toDouble();
    at::AutoGradMode enable(true);
    at::Tensor g = saved[0].detach().requires_grad_(true);
    at::Tensor c = saved[1].detach().requires_grad_(true);
    at::Tensor rho = saved[2].detach().requires_grad_(true);
    const at::Tensor out = invariants_composite(c, rho, plan, sizes, floor_sq);
    const auto first = torch::autograd::grad({out}, {c, rho}, {g}, /*retain_graph=*/true, /*create_graph=*/true);
    at::Tensor pairing = at::zeros({}, c.options());
    if (grads[0].defined()) pairing = pairing + (first[0] * grads[0]).sum();
    if (grads[1].defined()) pairing = pairing + (first[1] * grads[1]).sum();
    if (!pairing.requires_grad()) return with_plan_slots({at::Tensor(), at::Tensor(), at::Tensor()});
    const auto second = torch::autograd::grad({pairing}, {g, c, rho}, {}, /*retain_graph=*/false,
                                              /*create_graph=*/false, /*allow_unused=*/true);
    return with_plan_slots({second[0], second[1], second[2]});
  }
};

class Invariants : public torch::autograd::Function<Invariants> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& c, const at::Tensor& rho, at::TensorList plan,
                            at::IntArrayRef sizes, double floor_sq) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({c, rho});
    ctx->saved_data["plan"] = plan.vec();
    ctx->saved_data["sizes"] = sizes.vec();
    ctx->saved_data["floor_sq"] = floor_sq;
    return call_invariants(c, rho, plan, sizes, floor_sq);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (!grads[0].defined()) return with_plan_slots({at::Tensor(), at::Tensor()});
    const auto plan = ctx->saved_data["plan"].toTensorVector();
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    auto out = InvariantsBackward::apply(grads[0], saved[0], saved[1], plan, sizes,
                                         ctx->saved_data["floor_sq"].toDouble());
    return with_plan_slots({out[0], out[1]});
  }
};

at::Tensor invariants_autograd(const at::Tensor& c, const at::Tensor& rho, at::TensorList plan, at::IntArrayRef sizes,
                               double floor_sq) {
  return Invariants::apply(c, rho, plan, sizes, floor_sq);
}

}  // namespace
}  // namespace descriptors
}  // namespace spinforce

TORCH_LIBRARY_IMPL(spinforce, Autograd, m) {
  m.impl("descriptor_invariants", &spinforce::descriptors::invariants_autograd);
}
