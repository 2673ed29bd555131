#pragma once
// One step of a registered LLG scheme (dynamics/integrators.hpp) on the CPU or a CUDA device:
// runs its stages in order, asks for the fields of every intermediate configuration, and owns
// the work arrays, which it keeps from one step (and one run) to the next.
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "dynamics/integrators.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

class Integrator {
 public:
  // ValueError naming the registered schemes when `name` is none of them.
  Integrator(const std::string& name, const LLGCoefficients& coeff);
  static std::vector<std::string> names();

  const std::string& name() const { return name_; }
  int stages() const { return Integrators::info[scheme_].stages; }

  // Advances spins S^n (validated (N,3) float64, in place) to S^{n+1}; `start` holds the fields
  // of S^n and evaluate(X) gives those of an intermediate configuration X. Returns an undefined
  // tensor, or the fields of the stage that wrote a non-finite spin.
  at::Tensor step(at::Tensor& spins, const at::Tensor& start, uint64_t n,
                  const std::function<at::Tensor(const at::Tensor&)>& evaluate);

 private:
  bool apply(int stage, at::Tensor& spins, const at::Tensor& fields, uint64_t n);

  std::string name_;
  int scheme_ = 0;
  LLGCoefficients coeff_;
  at::Tensor work_, aux_, noise_;  // see LLGArrays; aux and noise undefined where unused
};

}  // namespace spinforce
