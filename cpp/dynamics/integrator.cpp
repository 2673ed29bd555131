#include "dynamics/integrator.hpp"

#include <cmath>

#include "common/errors.hpp"
#include "dynamics/llg_cuda.hpp"

namespace spinforce {

std::vector<std::string> Integrator::names() {
  std::vector<std::string> out;
  for (const SchemeInfo& s : Integrators::info) out.emplace_back(s.name);
  return out;
}

Integrator::Integrator(const std::string& name, const LLGCoefficients& coeff) : name_(name), coeff_(coeff) {
  scheme_ = -1;
  for (int k = 0; k < Integrators::size; ++k)
    if (name == Integrators::info[k].name) scheme_ = k;
  if (scheme_ < 0) {
    std::string known;
    for (const std::string& n : names()) known += (known.empty() ? "'" : ", '") + n + "'";
    value_error("integrator must be one of ", known, ", got '", name, "'");
  }
}

bool Integrator::apply(int stage, at::Tensor& spins, const at::Tensor& fields_in, uint64_t n) {
  const at::Tensor H = fields_in.to(spins.device(), at::kDouble).contiguous();
  const LLGArrays arrays{spins.data_ptr<double>(), H.data_ptr<double>(), work_.data_ptr<double>(),
                         aux_.defined() ? aux_.data_ptr<double>() : nullptr,
                         noise_.defined() ? noise_.data_ptr<double>() : nullptr};
  const int64_t num = spins.size(0);
  const bool last = stage == stages() - 1;
  if (spins.is_cuda()) {
#ifdef SPINFORCE_WITH_CUDA
    llg_stage_cuda(scheme_, stage, arrays, coeff_, num, n, spins.get_device());
    return at::isfinite(last ? spins : work_).all().item<bool>();
#else
    value_error("spins are on ", spins.device(), " but this spinforce was built without CUDA kernels");
#endif
  }
  const LLGCoefficients c = coeff_;
  const int scheme = scheme_;
  const double* out = last ? arrays.spins : arrays.work;
  bool finite = true;  // checked on the row just written, while it is in cache
#pragma omp parallel for schedule(static) reduction(&& : finite)
  for (int64_t i = 0; i < num; ++i) {
    integrator_stage_site(scheme, stage, i, arrays, c, n);
    finite = finite && std::isfinite(out[3 * i]) && std::isfinite(out[3 * i + 1]) && std::isfinite(out[3 * i + 2]);
  }
  return finite;
}

at::Tensor Integrator::step(at::Tensor& spins, const at::Tensor& start, uint64_t n,
                            const std::function<at::Tensor(const at::Tensor&)>& evaluate) {
  if (!work_.defined() || !work_.is_same_size(spins) || work_.device() != spins.device()) {
    work_ = at::empty_like(spins);
    aux_ = Integrators::info[scheme_].uses_aux ? at::empty_like(spins) : at::Tensor();
    // On the CPU drawing the noise at every stage would cost more than keeping it.
    noise_ = coeff_.noise_sigma > 0.0 && spins.device().is_cpu() ? at::empty_like(spins) : at::Tensor();
  }
  for (int s = 0; s < stages(); ++s) {
    const at::Tensor fields = s == 0 ? start : evaluate(work_);
    if (!apply(s, spins, fields, n)) return fields;
  }
  return at::Tensor();
}

}  // namespace spinforce
