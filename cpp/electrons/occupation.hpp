#pragma once
// Occupations of single-particle levels at fixed mu or fixed electron count, T_el >= 0.
#include <ATen/ATen.h>

#include "electrons/sd_model.hpp"

namespace spinforce {

struct Occupation {
  at::Tensor f;          // (M,) occupations in [0,1], float64 CPU
  double mu = 0.0;       // chemical potential
  double energy = 0.0;   // Omega (fixed mu) or F = Omega + mu N_e (fixed filling)
  double num_electrons = 0.0;
};

// Levels (M,) sorted ascending. At kT = 0 and fixed filling, a degenerate Fermi level (levels
// within kDegeneracyTol*(1 + max|e|)) shares the remaining electrons equally among its members,
// which is independent of the eigenvector basis returned by LAPACK; mu is that level, or the
// midpoint of the gap when the shell is exactly full.
Occupation occupy(const at::Tensor& levels, const SDModel& model);

constexpr double kDegeneracyTol = 1e-9;

// Grand-potential density g(e) = -kT ln(1 + exp(-(e - mu)/kT)), kT = 0 gives min(e - mu, 0).
double grand_potential_density(double e, double mu, double kT);
double fermi(double e, double mu, double kT);

}  // namespace spinforce
