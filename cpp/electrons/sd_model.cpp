#include "electrons/sd_model.hpp"

#include <cmath>

#include "common/errors.hpp"

namespace spinforce {

SDModel::SDModel(std::shared_ptr<const Lattice> lattice, double t, double J, std::optional<double> mu,
                 std::optional<double> filling, double kT, double t2, double t3)
    : lattice_(std::move(lattice)), t_(t), t2_(t2), t3_(t3), J_(J), kT_(kT), mu_(mu), filling_(filling) {
  require(lattice_ != nullptr, "lattice must be a spinforce.Lattice");
  require(mu.has_value() != filling.has_value(),
          "give exactly one of mu (fixed chemical potential) and filling (fixed electron count)");
  if (filling) {
    require(std::isfinite(*filling) && *filling > 0.0 && *filling < 1.0,
            "filling must lie in the open interval (0, 1) (electrons per spin orbital), got ", *filling);
  }
  if (mu) require(std::isfinite(*mu), "mu must be finite, got ", *mu);
  require(std::isfinite(kT) && kT >= 0.0, "kT (electron temperature) must be >= 0, got ", kT);
  require(std::isfinite(J), "J must be finite, got ", J);
  require(std::isfinite(t) && std::isfinite(t2) && std::isfinite(t3), "hoppings t, t2, t3 must be finite");
  const double amplitudes[3] = {t, t2, t3};
  for (int k = 1; k <= 3; ++k) {
    if (amplitudes[k - 1] == 0.0) continue;
    HoppingShell shell;
    shell.shell = k;
    shell.amplitude = amplitudes[k - 1];
    shell.offsets = lattice_->shell_offsets(k);
    shell.neighbors = lattice_->neighbor_table(shell.offsets);
    shells_.push_back(std::move(shell));
  }
}

double SDModel::num_electrons() const {
  require(filling_.has_value(), "the model has a fixed chemical potential, not a filling");
  return *filling_ * 2.0 * static_cast<double>(num_sites());
}

double SDModel::gershgorin_bound() const {
  double bound = std::abs(J_);
  for (const auto& s : shells_) bound += std::abs(s.amplitude) * static_cast<double>(s.offsets.size());
  return bound;
}

}  // namespace spinforce
