#pragma once
// Electron statistics shared by every s-d solver (ED, KPM, and Python's fixed-mu tools): the
// Fermi function, the grand-potential density, the one chemical-potential solver, and the
// energy of the ensemble (grand potential at fixed mu, free energy at fixed electron count).
#include <cstdint>

namespace spinforce {

class SDModel;

// Levels closer than kDegeneracyTol * (1 + max|e|) form one shell at kT = 0.
constexpr double kDegeneracyTol = 1e-9;

// f(e) = 1/(1 + exp((e - mu)/kT)); kT = 0 gives a step with f(mu) = 1/2.
double fermi(double e, double mu, double kT);
// Grand-potential density g(e) = -kT ln(1 + exp(-(e - mu)/kT)), kT = 0 gives min(e - mu, 0).
double grand_potential_density(double e, double mu, double kT);

// Chemical potential of weighted levels: mu with sum_m w_m f(e_m - mu) = target, for levels e
// (M, any order) with weights w (nullptr: all 1; the quadrature weights of a KPM spectral
// measure, or levels pooled over many states). ValueError unless 0 < target < sum w.
//  kT > 0: bisection on the monotone count until the bracket is below 1e-15 (1 + |lo| + |hi|)
//          (at most 200 halvings).
//  kT = 0: the count is a staircase. When `target` fills a set of levels exactly (to
//          1e-9 max(1, sum w)) mu is the midpoint of the gap above them, since every mu in that
//          gap gives the same count; otherwise the level that holds the partly filled shell
//          (levels within kDegeneracyTol of each other count as one shell).
double solve_mu(const double* e, const double* w, int64_t M, double target, double kT);

// The potential whose gradient gives the fields: the grand potential Omega at fixed mu, the
// free energy F = Omega + mu N_e at fixed electron count N_e.
double ensemble_energy(const SDModel& model, double grand_potential, double mu);

}  // namespace spinforce
