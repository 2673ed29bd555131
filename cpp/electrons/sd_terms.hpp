#pragma once
// The pieces of the s-d Hamiltonian and of its Hellmann-Feynman fields that every electron
// solver shares (sd_model.hpp for H). Orbital index 2*i + s, s = 0 up, 1 down.
#include <ATen/ATen.h>

#include "electrons/sd_model.hpp"

namespace spinforce {

// All hopping shells in one table: neighbour j = neighbors[i][a] of site i with matrix element
// amplitudes[a] (= -t_k of the shell of column a), for both spins. neighbors (N, K) int64,
// amplitudes (K,) float64, both on the CPU; K = 0 without hoppings.
struct HoppingTable {
  at::Tensor neighbors, amplitudes;
};
HoppingTable hopping_table(const SDModel& model);

// On-site blocks -J S_i . sigma = -J [[Sz, Sx - i Sy], [Sx + i Sy, -Sz]], shifted and scaled as
// (block - shift)/scale (the KPM rescaling H~ = (H - a)/b; shift 0, scale 1 for H itself):
// (N, 2, 2) complex128 on the spins' device.
at::Tensor onsite_blocks(const at::Tensor& spins, double J, double shift = 0.0, double scale = 1.0);

// Fields H_i = -dE/dS_i = J Tr[sigma rho_i] and electrons per site Tr rho_i from the on-site
// density matrix rho_i, given by its elements rho_updn = <c+_dn c_up> (complex, (N,)) and the
// real diagonal n_up, n_dn (N,):  H = J (2 Re rho_updn, -2 Im rho_updn, n_up - n_dn).
struct OnsiteFields {
  at::Tensor fields;   // (N, 3) float64
  at::Tensor density;  // (N,) float64
};
OnsiteFields fields_from_onsite_density(const at::Tensor& rho_updn, const at::Tensor& n_up, const at::Tensor& n_dn,
                                        double J);

}  // namespace spinforce
