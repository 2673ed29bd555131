#include "providers/field_provider.hpp"

#include "common/errors.hpp"

namespace spinforce {

void require_finite_result(const FieldResult& result, const std::string& provider) {
  const bool fields_finite = !result.fields.defined() || at::isfinite(result.fields).all().item<bool>();
  require(std::isfinite(result.energy) && fields_finite, "the ", provider, " provider returned a non-finite ",
          fields_finite ? "energy" : "field", " (NaN or inf) for these finite unit spins (energy = ", result.energy,
          "); check the provider's parameters: couplings, KPM bounds, the ML model file");
}

}  // namespace spinforce
