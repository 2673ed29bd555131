#include "common/spins.hpp"

#include "common/errors.hpp"

namespace spinforce {

at::Tensor checked_spins(const at::Tensor& spins, int64_t num_sites, const char* name) {
  require(spins.dim() == 2 && spins.size(0) == num_sites && spins.size(1) == 3, name,
          " must have shape (", num_sites, ", 3) for this lattice, got ", spins.sizes());
  require(at::isFloatingType(spins.scalar_type()), name, " must be a floating-point array, got ",
          spins.scalar_type());
  at::Tensor s = spins.to(at::kDouble).contiguous();
  require(at::isfinite(s).all().item<bool>(), name, " contains NaN or infinite values");
  const double worst = (at::linalg_vector_norm(s, 2, {1}) - 1.0).abs().max().item<double>();
  require(worst <= kUnitLengthTolerance, name, " must be unit vectors: max | |S_i| - 1 | = ", worst,
          " exceeds ", kUnitLengthTolerance, " (normalise them first)");
  return s;
}

}  // namespace spinforce
