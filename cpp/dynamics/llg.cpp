#include "dynamics/llg.hpp"

#include <cmath>

#include "common/errors.hpp"

namespace spinforce {

LLG::LLG(std::shared_ptr<FieldProvider> provider, double dt, double alpha, double kT, double gamma,
         const std::string& integrator, uint64_t seed)
    : provider_(std::move(provider)), kT_(kT) {
  require(provider_ != nullptr, "provider must be a field provider, got None");
  require(std::isfinite(dt) && dt > 0.0, "dt must be a finite number > 0, got ", dt);
  require(std::isfinite(alpha) && alpha >= 0.0, "alpha must be a finite number >= 0, got ", alpha);
  require(std::isfinite(kT) && kT >= 0.0, "kT must be a finite number >= 0, got ", kT);
  require(std::isfinite(gamma) && gamma > 0.0, "gamma must be a finite number > 0, got ", gamma);
  if (integrator == "sib") {
    integrator_ = Integrator::SIB;
  } else if (integrator == "heun") {
    integrator_ = Integrator::Heun;
  } else {
    value_error("integrator must be 'sib' or 'heun', got '", integrator, "'");
  }
  coeff_.dt = dt;
  coeff_.alpha = alpha;
  coeff_.gamma = gamma;
  coeff_.noise_sigma = std::sqrt(2.0 * alpha * kT / (gamma * dt));
  coeff_.seed = seed;
}

bool LLG::apply(LLGStage stage, at::Tensor& spins, const at::Tensor& fields, Buffers& b, int64_t step) const {
  const at::Tensor H = fields.to(spins.device(), at::kDouble).contiguous();
  const LLGArrays arrays{spins.data_ptr<double>(), H.data_ptr<double>(), b.work.data_ptr<double>(),
                         b.aux.defined() ? b.aux.data_ptr<double>() : nullptr,
                         b.noise.defined() ? b.noise.data_ptr<double>() : nullptr};
  const int64_t n = spins.size(0);
  const uint64_t counter = static_cast<uint64_t>(step);
  const bool corrector = stage == LLGStage::SIBCorrector || stage == LLGStage::HeunCorrector;
  if (spins.is_cuda()) {
#ifdef SPINFORCE_WITH_CUDA
    llg_stage_cuda(stage, arrays, coeff_, n, counter);
    return at::isfinite(corrector ? spins : b.work).all().item<bool>();
#else
    value_error("spins are on ", spins.device(), " but this spinforce was built without CUDA kernels");
#endif
  }
  const LLGCoefficients c = coeff_;
  const double* out = corrector ? arrays.spins : arrays.work;
  bool finite = true;  // checked on the row just written, while it is in cache
#pragma omp parallel for schedule(static) reduction(&& : finite)
  for (int64_t i = 0; i < n; ++i) {
    llg_stage_site(stage, i, arrays, c, counter);
    finite = finite && std::isfinite(out[3 * i]) && std::isfinite(out[3 * i + 1]) && std::isfinite(out[3 * i + 2]);
  }
  return finite;
}

void LLG::non_finite(int64_t step, const at::Tensor& fields) const {
  const double t = static_cast<double>(step) * coeff_.dt;
  if (!at::isfinite(fields).all().item<bool>())
    value_error("LLG step ", step, " (t = ", t, "): the ", provider_->name(),
                " provider returned non-finite fields (NaN or inf) for finite spins; check its parameters");
  value_error("LLG step ", step, " (t = ", t, ") produced non-finite spins (NaN or inf) from finite fields up to |H| = ",
              fields.abs().max().item<double>(), ": dt = ", coeff_.dt, " is far too large for them",
              kT_ > 0.0 ? " and the thermal noise" : "", "; reduce dt so that dt * |H| is well below 1");
}

at::Tensor LLG::run(const at::Tensor& spins_in, int64_t steps, int64_t every, int64_t start_step,
                    const FrameCallback& frame, const PollCallback& poll) {
  require(steps >= 0, "steps must be >= 0, got ", steps);
  require(every >= 0, "every must be >= 0 (0: no frames), got ", every);
  require(start_step >= 0, "start_step must be >= 0, got ", start_step);
  require(spins_in.dim() == 2 && spins_in.size(0) == provider_->num_sites() && spins_in.size(1) == 3,
          "spins must have shape (", provider_->num_sites(), ", 3), got ", spins_in.sizes());
  at::Tensor S = spins_in.to(at::kDouble).contiguous().clone();
  Buffers buffers;
  buffers.work = at::empty_like(S);
  if (integrator_ == Integrator::Heun) buffers.aux = at::empty_like(S);
  // On the CPU drawing the noise twice would cost more than keeping it.
  if (coeff_.noise_sigma > 0.0 && S.device().is_cpu()) buffers.noise = at::empty_like(S);
  const LLGStage first = integrator_ == Integrator::SIB ? LLGStage::SIBPredictor : LLGStage::HeunPredictor;
  const LLGStage second = integrator_ == Integrator::SIB ? LLGStage::SIBCorrector : LLGStage::HeunCorrector;

  // The fields of S^n are computed by the first stage, or were already computed for a frame.
  FieldResult current;
  bool have_current = false;
  for (int64_t k = 0; k < steps; ++k) {
    const int64_t n = start_step + k;
    if (!have_current) current = provider_->compute(S);
    if (!apply(first, S, current.fields, buffers, n)) non_finite(n + 1, current.fields);
    const FieldResult staged = provider_->compute(buffers.work);
    if (!apply(second, S, staged.fields, buffers, n)) non_finite(n + 1, staged.fields);
    have_current = false;
    const int64_t done = n + 1;
    if (every > 0 && done % every == 0) {
      current = provider_->compute(S);
      have_current = true;
      if (frame) frame(done, S, current);
    }
    if (poll) poll(done);
  }
  return S;
}

}  // namespace spinforce
