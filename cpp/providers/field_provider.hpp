#pragma once
// A field provider maps spins (N,3) to an energy and local fields H_i = -dE/dS_i (N,3).
// Exact diagonalisation, KPM, classical spin models and trained ML models all implement it,
// and the LLG integrator takes any of them.
#include <ATen/ATen.h>

#include <cmath>
#include <string>

namespace spinforce {

struct FieldResult {
  double energy = 0.0;      // the potential whose negative gradient is `fields`
  // Providers on a GPU may leave the energy on the device (0-dim tensor) instead of `energy`,
  // so that an evaluation needs no device-to-host copy; energy_value() reads either.
  at::Tensor energy_tensor;
  at::Tensor fields;        // (N,3) float64
  at::Tensor density;       // (N,) electrons per site; undefined for spin-only models
  double mu = std::nan(""); // chemical potential used; NaN for spin-only models
  at::Tensor eigenvalues;   // single-particle levels (ED only)
  at::Tensor uncertainty;   // (N,) spread of an ML committee's torques; undefined otherwise

  double energy_value() const { return energy_tensor.defined() ? energy_tensor.item<double>() : energy; }
};

class FieldProvider {
 public:
  virtual ~FieldProvider() = default;
  virtual int64_t num_sites() const = 0;
  // The provider's method name in run configs ([method] name = "ed", "kpm", "heisenberg", "ml"):
  // python/spinforce/run_setup.py builds providers by this name.
  virtual std::string name() const = 0;
  // The provider as error messages name it ("the Heisenberg provider returned ...").
  virtual std::string title() const { return name(); }
  // spins: (N,3) contiguous float64 unit vectors, already validated by the user-facing entry
  // (common/spins.hpp); the hot path does no checks.
  virtual FieldResult compute(const at::Tensor& spins) = 0;
};

// ValueError when a provider returned a non-finite energy or fields for (finite) spins.
void require_finite_result(const FieldResult& result, const std::string& provider);

}  // namespace spinforce
