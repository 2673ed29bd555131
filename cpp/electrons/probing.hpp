#pragma once
// Probe vectors for stochastic traces with probing (Tang & Saad, Numer. Linear Algebra Appl. 19,
// 485 (2012); Wang et al., J. Chem. Phys. 148, 094107 (2018)): sites of one colour lie farther
// apart than the probing distance, so Tr[D] ~ sum_r R_r^+ D R_r drops only the elements of D
// between sites that far apart.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "lattice/lattice.hpp"

namespace spinforce {

// Greedy colouring in site order: sites of one colour lie farther apart than `distance`
// (minimum image on the periodic lattice). No distance: every site its own colour.
std::vector<int32_t> probing_colours(const Lattice& lattice, std::optional<double> distance);

// Dense probe block (N, 2, R), R = 2 * num_colours, of complex type `type` on the CPU: vector
// 2c + s has a unit phase on spin s of every site of colour c. Random phases, reproducible per
// (seed, orbital), when `random_phases`; ones otherwise (exact traces, one site per colour).
at::Tensor probe_vectors(const std::vector<int32_t>& colour, int64_t num_colours, bool random_phases, uint64_t seed,
                         at::ScalarType type);

}  // namespace spinforce
