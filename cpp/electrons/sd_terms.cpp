#include "electrons/sd_terms.hpp"

#include <vector>

namespace spinforce {

HoppingTable hopping_table(const SDModel& model) {
  std::vector<at::Tensor> tables;
  std::vector<double> amplitudes;
  for (const auto& shell : model.hopping_shells()) {
    tables.push_back(shell.neighbors);
    amplitudes.insert(amplitudes.end(), shell.offsets.size(), -shell.amplitude);
  }
  HoppingTable t;
  t.neighbors = tables.empty() ? at::empty({model.num_sites(), 0}, at::kLong) : at::cat(tables, 1).contiguous();
  t.amplitudes = at::tensor(amplitudes, at::kDouble);
  return t;
}

at::Tensor onsite_blocks(const at::Tensor& s, double J, double shift, double scale) {
  at::Tensor sx = s.select(1, 0), sy = s.select(1, 1), sz = s.select(1, 2);
  at::Tensor zero = at::zeros_like(sx);
  at::Tensor block = at::stack({at::complex((-J * sz - shift) / scale, zero), at::complex(-J * sx / scale, J * sy / scale),
                                at::complex(-J * sx / scale, -J * sy / scale), at::complex((J * sz - shift) / scale, zero)},
                               1);
  return block.view({s.size(0), 2, 2});
}

OnsiteFields fields_from_onsite_density(const at::Tensor& rho_updn, const at::Tensor& n_up, const at::Tensor& n_dn,
                                        double J) {
  OnsiteFields out;
  out.fields = at::stack({2.0 * J * at::real(rho_updn), -2.0 * J * at::imag(rho_updn), J * (n_up - n_dn)}, 1).contiguous();
  out.density = (n_up + n_dn).contiguous();
  return out;
}

}  // namespace spinforce
