#pragma once
#include <ATen/ATen.h>

namespace spinforce {

// Tolerance on |S_i| - 1 accepted at the user-facing boundary.
constexpr double kUnitLengthTolerance = 1e-6;

// Validates a spin configuration (N,3) of unit vectors and returns it as contiguous float64
// on its own device. Raises ValueError naming `name` on a wrong shape, NaN/inf, or |S| != 1.
at::Tensor checked_spins(const at::Tensor& spins, int64_t num_sites, const char* name = "spins");

}  // namespace spinforce
