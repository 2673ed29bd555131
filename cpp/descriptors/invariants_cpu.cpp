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

InvariantPlan make_invariant_plan(const at::Tensor& c, const at::Tensor& rho, at::TensorList plan,
                                  at::IntArrayRef sizes, std::vector<at::Tensor>& hold) {
  TORCH_CHECK_VALUE(c.dim() == 2 && rho.dim() == 2 && c.size(0) == rho.size(0),
                    "c and rho must have shapes (N, E) and (N, R), got ", c.sizes(), " and ", rho.sizes());
  TORCH_CHECK_VALUE(c.scalar_type() == rho.scalar_type() && c.device() == rho.device() &&
                        (c.scalar_type() == at::kFloat || c.scalar_type() == at::kDouble),
                    "c and rho must be float32 or float64 tensors of one dtype and device");
  TORCH_CHECK_VALUE(static_cast<int64_t>(plan.size()) == kPlanTensors, "plan must hold ", kPlanTensors,
                    " tensors, got ", plan.size());
  TORCH_CHECK_VALUE(sizes.size() == 4, "sizes must be (num_norms, num_power, num_kappa, num_bispectrum)");
  hold.clear();
  for (int64_t k = 0; k < kPlanTensors; ++k) {
    const at::ScalarType want = k == kPlanTensors - 1 ? at::kDouble : at::kLong;
    TORCH_CHECK_VALUE(plan[k].dim() == 1 && plan[k].scalar_type() == want && plan[k].device() == c.device(),
                      "plan[", k, "] must be a 1-d ", want, " tensor on ", c.device());
    hold.push_back(plan[k].contiguous());
  }
  InvariantPlan p{};
  p.E = c.size(1);
  p.R = rho.size(1);
  p.G = sizes[0];
  p.P = sizes[1];
  p.K = sizes[2];
  p.B = sizes[3];
  p.T = hold[8].numel();
  p.Q = hold[11].numel();
  TORCH_CHECK_VALUE(hold[0].numel() == p.R && hold[1].numel() == p.E && hold[2].numel() == p.E &&
                        hold[3].numel() == p.P && hold[4].numel() == p.T && hold[5].numel() == p.T &&
                        hold[6].numel() == p.T && hold[7].numel() == p.T && hold[12].numel() == p.T &&
                        hold[9].numel() == p.Q && hold[10].numel() == p.Q,
                    "plan tensors do not match c (", p.E, " entries) and rho (", p.R, " entries)");
  if (c.device().is_cpu()) {
    // Every index must fall inside the array it addresses.
    const int64_t bounds[12] = {p.G, p.P, p.R, p.G, p.R, p.R, p.G, p.G, p.K, p.E, p.K, p.B};
    for (int k = 0; k < 12; ++k) {
      if (hold[k].numel() == 0) continue;
      const int64_t lo = hold[k].min().item<int64_t>(), hi = hold[k].max().item<int64_t>();
      TORCH_CHECK_VALUE(lo >= 0 && hi < bounds[k], "plan[", k, "] entries must lie in [0, ", bounds[k], ")");
    }
  }
  p.norm_of = hold[0].data_ptr<int64_t>();
  p.entry_of = hold[1].data_ptr<int64_t>();
  p.phase_r = hold[2].data_ptr<int64_t>();
  p.phase_norm = hold[3].data_ptr<int64_t>();
  p.kappa_r1 = hold[4].data_ptr<int64_t>();
  p.kappa_r2 = hold[5].data_ptr<int64_t>();
  p.kappa_n1 = hold[6].data_ptr<int64_t>();
  p.kappa_n2 = hold[7].data_ptr<int64_t>();
  p.kappa_of = hold[8].data_ptr<int64_t>();
  p.bis_c = hold[9].data_ptr<int64_t>();
  p.bis_k = hold[10].data_ptr<int64_t>();
  p.bis_of = hold[11].data_ptr<int64_t>();
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
      site_invariants(p, coef, floor_sq, c + p.E * i, rho + p.R * i, out + p.num_outputs() * i, scratch.data());
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
      site_invariants_vjp(p, coef, floor_sq, c + p.E * i, rho + p.R * i, grad + p.num_outputs() * i,
                          grad_c + p.E * i, grad_rho + p.R * i, scratch.data());
  }
}

at::Tensor invariants_cpu(const at::Tensor& c_in, const at::Tensor& rho_in, at::TensorList plan, at::IntArrayRef sizes,
                          double floor_sq) {
  std::vector<at::Tensor> hold;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, hold);
  const at::Tensor c = c_in.contiguous(), rho = rho_in.contiguous();
  const int64_t N = c.size(0);
  at::Tensor out = at::empty({N, p.num_outputs()}, c.options());
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants", [&] {
    invariants_loop<scalar_t>(p, hold[12].data_ptr<double>(), static_cast<scalar_t>(floor_sq),
                              c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> invariants_backward_cpu(const at::Tensor& grad_in, const at::Tensor& c_in,
                                                           const at::Tensor& rho_in, at::TensorList plan,
                                                           at::IntArrayRef sizes, double floor_sq) {
  std::vector<at::Tensor> hold;
  const InvariantPlan p = make_invariant_plan(c_in, rho_in, plan, sizes, hold);
  check_same(grad_in, c_in, "grad", p.num_outputs(), "c");
  const at::Tensor c = c_in.contiguous(), rho = rho_in.contiguous(), grad = grad_in.contiguous();
  const int64_t N = c.size(0);
  at::Tensor grad_c = at::empty_like(c), grad_rho = at::empty_like(rho);
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "descriptor_invariants_backward", [&] {
    invariants_vjp_loop<scalar_t>(p, hold[12].data_ptr<double>(), static_cast<scalar_t>(floor_sq),
                                  c.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                  grad_c.data_ptr<scalar_t>(), grad_rho.data_ptr<scalar_t>(), N);
  });
  return {grad_c, grad_rho};
}

at::Tensor invariants_meta(const at::Tensor& c, const at::Tensor&, at::TensorList, at::IntArrayRef sizes, double) {
  TORCH_CHECK_VALUE(sizes.size() == 4, "sizes must be (num_norms, num_power, num_kappa, num_bispectrum)");
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
