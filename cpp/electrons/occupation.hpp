#pragma once
// Occupations of single-particle levels at fixed mu or fixed electron count, T_el >= 0.
#include <ATen/ATen.h>

#include "electrons/fermi_dirac.hpp"
#include "electrons/sd_model.hpp"

namespace spinforce {

struct Occupation {
  at::Tensor f;          // (M,) occupations in [0,1], float64 CPU
  double mu = 0.0;       // chemical potential
  double energy = 0.0;   // Omega (fixed mu) or F = Omega + mu N_e (fixed filling)
  double num_electrons = 0.0;
};

// Levels (M,) sorted ascending; mu from solve_mu (fermi_dirac.hpp). At kT = 0 and fixed
// filling, a degenerate Fermi level (levels within kDegeneracyTol*(1 + max|e|)) shares the
// remaining electrons equally among its members, which is independent of the eigenvector basis
// returned by LAPACK.
Occupation occupy(const at::Tensor& levels, const SDModel& model);

}  // namespace spinforce
