#pragma once
// Kernel polynomial method (KPM) for the s-d model with gradient-based probing:
// Barros & Kato, PRB 88, 235101 (2013); Wang, Chern, Batista & Barros, J. Chem. Phys. 148,
// 094107 (2018); Weisse et al., Rev. Mod. Phys. 78, 275 (2006) for the kernel and the DOS.
//
// The grand potential Omega = Tr g(H), g(e) = -kT ln(1 + exp(-(e - mu)/kT)), is expanded in
// Chebyshev polynomials of H~ = (H - a)/b with the Jackson kernel. Traces are estimated with
// probe vectors from a distance-d colouring of the lattice (one vector per colour and spin,
// random phases). Two moments come from each product (T_2n = 2 T_n^2 - 1,
// T_2n+1 = 2 T_n+1 T_n - T_1). The fields come from the on-site 2x2 blocks of dOmega/dH,
// accumulated in reverse mode through the Chebyshev recursion with the vectors regenerated
// backwards, so the memory is O(N R) for R probe vectors, independent of the number of moments.
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "electrons/chebyshev.hpp"
#include "electrons/sd_model.hpp"
#include "common/workspace.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

struct KPMSettings {
  int64_t moments = 500;                    // M, number of Chebyshev moments (>= 2)
  std::optional<double> probing_distance;  // d > 0; nullopt: exact traces (every site a colour)
  uint64_t seed = 0;                        // random phases of the probe vectors
  std::string dtype = "complex128";         // "complex128" or "complex64"
  std::optional<std::pair<double, double>> bounds;  // spectral bounds (lo, hi); default: exact band bounds
};

class KPM : public FieldProvider {
 public:
  KPM(std::shared_ptr<const SDModel> model, KPMSettings settings);

  int64_t num_sites() const override { return model_->num_sites(); }
  std::string name() const override { return "kpm"; }
  std::string title() const override { return "KPM"; }
  FieldResult compute(const at::Tensor& spins) override;
  const Workspace& workspace() const { return workspace_; }

  // Chebyshev moments mu_m = Re sum_r R_r^+ T_m(H~) R_r (estimates of Tr T_m(H~)), (M,) float64 CPU.
  at::Tensor moments(const at::Tensor& spins);
  // `steps` forward Chebyshev steps on the block of probe vectors and nothing else, returning
  // when the device is done: the kernel that bench/kpm.py times.
  void chebyshev_steps(const at::Tensor& spins, int64_t steps);

  const SDModel& model() const { return *model_; }
  const KPMSettings& settings() const { return settings_; }
  int64_t num_colours() const { return num_colours_; }
  int64_t num_probes() const { return 2 * num_colours_; }
  double center() const { return center_; }
  double half_width() const { return half_width_; }
  // Colour of every site (N,) int64.
  at::Tensor colours() const;

 private:
  struct DeviceData {
    at::Tensor neighbors, hopping, probes;  // probes: dense (N, 2, R)
    double probe_norm = 0.0;                 // sum_r <R_r, R_r> = mu_0
  };
  struct Forward {
    at::Tensor alpha_prev, alpha_cur;  // alpha_{K-1}, alpha_{K}, K = M/2
    std::vector<double> moments;
  };
  const DeviceData& device_data(const at::Device& device);
  at::Tensor onsite_block(const at::Tensor& spins) const;
  Forward forward(const at::Tensor& spins, const at::Tensor& onsite);

  std::shared_ptr<const SDModel> model_;
  KPMSettings settings_;
  at::ScalarType complex_type_, real_type_;
  double center_ = 0.0, half_width_ = 1.0;
  int64_t num_colours_ = 0;
  std::vector<int32_t> colour_;
  std::map<std::string, DeviceData> device_cache_;
  Workspace workspace_;  // the evaluations' large tensors, reused by the next evaluation
};

}  // namespace spinforce
