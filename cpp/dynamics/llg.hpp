#pragma once
// Stochastic Landau-Lifshitz-Gilbert dynamics driven by any FieldProvider. The time loop runs
// here; the caller is only called back when a frame is due (and, optionally, by a cheap poll
// hook for progress and interrupts). A step is the integrator's (dynamics/integrator.hpp).
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>

#include "dynamics/integrator.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

class LLG {
 public:
  // frame(step, spins, result): spins after `step` steps and the provider's result for them.
  using FrameCallback = std::function<void(int64_t, const at::Tensor&, const FieldResult&)>;
  // poll(step) after every step, outside any parallel region; may throw to stop the run.
  using PollCallback = std::function<void(int64_t)>;

  // dt > 0, alpha >= 0, kT >= 0 (spin temperature, k_B = 1), gamma > 0, integrator one of
  // Integrator::names() ("sib", the default in Python, "heun", "rk4"); seed keys the Philox stream.
  // site_offset: global index of site 0 of the provider's spins (a slab of a lattice split over
  // processes); the noise of site i is that of global site site_offset + i.
  LLG(std::shared_ptr<FieldProvider> provider, double dt, double alpha, double kT, double gamma,
      const std::string& integrator, uint64_t seed, uint64_t site_offset = 0);

  // Advances validated spins (N,3 float64 on CPU or CUDA) from step start_step by `steps` steps
  // and returns the final spins. When every > 0, frame() is called after each step n with
  // n % every == 0 (start_step < n <= start_step + steps). The noise of step n depends only on
  // (seed, n, site), so run(S_k, start_step=k) continues a run bit-identically. ValueError naming
  // the step when a stage produces non-finite spins (non-finite fields, or dt far too large).
  // The fields of the returned spins, when computed for a frame, are kept: a run that starts
  // from exactly those spins (the next chunk of a chunked run) does not evaluate them again.
  at::Tensor run(const at::Tensor& spins, int64_t steps, int64_t every, int64_t start_step,
                 const FrameCallback& frame = nullptr, const PollCallback& poll = nullptr);

  FieldProvider& provider() { return *provider_; }
  std::shared_ptr<FieldProvider> provider_ptr() const { return provider_; }
  double dt() const { return coeff_.dt; }
  double alpha() const { return coeff_.alpha; }
  double kT() const { return kT_; }
  double gamma() const { return coeff_.gamma; }
  uint64_t seed() const { return coeff_.seed; }
  uint64_t site_offset() const { return coeff_.site_offset; }
  std::string integrator_name() const { return integrator_.name(); }

 private:
  [[noreturn]] void non_finite(int64_t step, const at::Tensor& fields) const;

  std::shared_ptr<FieldProvider> provider_;
  LLGCoefficients coeff_;
  double kT_;
  Integrator integrator_;
  // The last frame: its spins and their provider result (copies, safe from the caller).
  at::Tensor last_spins_;
  FieldResult last_result_;
};

}  // namespace spinforce
