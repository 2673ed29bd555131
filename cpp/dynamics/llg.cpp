#include "dynamics/llg.hpp"

#include <cmath>

#include "common/errors.hpp"

namespace spinforce {

namespace {

LLGCoefficients coefficients(double dt, double alpha, double kT, double gamma, uint64_t seed, uint64_t site_offset) {
  require(std::isfinite(dt) && dt > 0.0, "dt must be a finite number > 0, got ", dt);
  require(std::isfinite(alpha) && alpha >= 0.0, "alpha must be a finite number >= 0, got ", alpha);
  require(std::isfinite(kT) && kT >= 0.0, "kT must be a finite number >= 0, got ", kT);
  require(std::isfinite(gamma) && gamma > 0.0, "gamma must be a finite number > 0, got ", gamma);
  LLGCoefficients c;
  c.dt = dt;
  c.alpha = alpha;
  c.gamma = gamma;
  c.noise_sigma = std::sqrt(2.0 * alpha * kT / (gamma * dt));
  c.seed = seed;
  c.site_offset = site_offset;
  return c;
}

}  // namespace

LLG::LLG(std::shared_ptr<FieldProvider> provider, double dt, double alpha, double kT, double gamma,
         const std::string& integrator, uint64_t seed, uint64_t site_offset)
    : provider_(std::move(provider)),
      coeff_(coefficients(dt, alpha, kT, gamma, seed, site_offset)),
      kT_(kT),
      integrator_(integrator, coeff_) {
  require(provider_ != nullptr, "provider must be a field provider, got None");
}

void LLG::non_finite(int64_t step, const at::Tensor& fields) const {
  const double t = static_cast<double>(step) * coeff_.dt;
  if (!at::isfinite(fields).all().item<bool>())
    value_error("LLG step ", step, " (t = ", t, "): the ", provider_->title(),
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

  // The fields of S^n are computed by the first stage, or were already computed for a frame
  // (of this run, or the last frame of the previous one when it ended at these spins).
  FieldResult current;
  bool have_current = last_spins_.defined() && last_spins_.device() == S.device() && at::equal(last_spins_, S);
  if (have_current) current = last_result_;
  last_spins_ = at::Tensor();
  last_result_ = FieldResult();
  const auto evaluate = [this](const at::Tensor& X) { return provider_->compute(X).fields; };
  for (int64_t k = 0; k < steps; ++k) {
    const int64_t n = start_step + k;
    if (!have_current) current = provider_->compute(S);
    const at::Tensor bad = integrator_.step(S, current.fields, static_cast<uint64_t>(n), evaluate);
    if (bad.defined()) non_finite(n + 1, bad);
    have_current = false;
    const int64_t done = n + 1;
    if (every > 0 && done % every == 0) {
      current = provider_->compute(S);
      have_current = true;
      if (frame) frame(done, S, current);
    }
    if (poll) poll(done);
  }
  if (have_current) {
    last_spins_ = S.clone();
    last_result_ = current;
    last_result_.fields = current.fields.clone();
  }
  return S;
}

}  // namespace spinforce
