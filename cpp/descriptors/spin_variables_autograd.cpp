// Autograd of the local spin-variable ops, differentiable twice: the backward is itself an op
// with an autograd formula (its gradients come from local_spin_variables_double_backward), so
// force losses (-dE/dS with create_graph) can be trained through the descriptors, from Python
// and from TorchScript loaded in C++.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace spinforce {
namespace descriptors {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& patch, const at::Tensor& pairs, const at::Tensor& triangles) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("spinforce::local_spin_variables", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(patch, pairs, triangles);
}

at::Tensor call_backward(const at::Tensor& grad, const at::Tensor& patch, const at::Tensor& pairs,
                         const at::Tensor& triangles) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("spinforce::local_spin_variables_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, patch, pairs, triangles);
}

std::tuple<at::Tensor, at::Tensor> call_double_backward(const at::Tensor& u, const at::Tensor& grad,
                                                        const at::Tensor& patch, const at::Tensor& pairs,
                                                        const at::Tensor& triangles) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("spinforce::local_spin_variables_double_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&)>();
  return op.call(u, grad, patch, pairs, triangles);
}

class VariablesBackward : public torch::autograd::Function<VariablesBackward> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& patch,
                            const at::Tensor& pairs, const at::Tensor& triangles) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad, patch, pairs, triangles});
    return call_backward(grad, patch, pairs, triangles);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor u = grads[0];
    if (!u.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    auto [jvp, hvp] = call_double_backward(u, saved[0], saved[1], saved[2], saved[3]);
    return {jvp, hvp, at::Tensor(), at::Tensor()};
  }
};

class Variables : public torch::autograd::Function<Variables> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& patch, const at::Tensor& pairs,
                            const at::Tensor& triangles) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({patch, pairs, triangles});
    return call_forward(patch, pairs, triangles);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    return {VariablesBackward::apply(grads[0], saved[0], saved[1], saved[2]), at::Tensor(), at::Tensor()};
  }
};

at::Tensor variables_autograd(const at::Tensor& patch, const at::Tensor& pairs, const at::Tensor& triangles) {
  return Variables::apply(patch, pairs, triangles);
}

at::Tensor variables_backward_autograd(const at::Tensor& grad, const at::Tensor& patch, const at::Tensor& pairs,
                                       const at::Tensor& triangles) {
  return VariablesBackward::apply(grad, patch, pairs, triangles);
}

}  // namespace
}  // namespace descriptors
}  // namespace spinforce

TORCH_LIBRARY_IMPL(spinforce, Autograd, m) {
  m.impl("local_spin_variables", &spinforce::descriptors::variables_autograd);
  m.impl("local_spin_variables_backward", &spinforce::descriptors::variables_backward_autograd);
}
