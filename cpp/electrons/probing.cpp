#include "electrons/probing.hpp"

#include "common/limits.hpp"
#include "electrons/chebyshev.hpp"

namespace spinforce {
namespace {

// Reproducible per-(seed, orbital) random numbers in [0, 1): splitmix64.
double uniform_hash(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + index + 0x632BE59BD9B4E019ULL;
  for (int round = 0; round < 2; ++round) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
  }
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::vector<int32_t> probing_colours(const Lattice& lattice, std::optional<double> distance) {
  const int64_t N = lattice.num_sites();
  std::vector<int32_t> colour(N);
  if (!distance) {
    for (int64_t i = 0; i < N; ++i) colour[i] = static_cast<int32_t>(i);
    return colour;
  }
  // Wrapped displacements within the distance, found once at site 0 (translation invariance);
  // at most N - 1 of them however large the distance.
  std::vector<Offset> displacements;
  for (int64_t j : lattice.sites_within(*distance)) displacements.push_back(lattice.coords(j));
  std::vector<int64_t> used_by(N + 1, -1);  // used_by[c] == i: colour c taken near site i
  for (int64_t i = 0; i < N; ++i) {
    poll_interrupt();
    const Offset c = lattice.coords(i);
    for (const Offset& o : displacements) {
      const int64_t j = lattice.site_index({c[0] + o[0], c[1] + o[1], c[2] + o[2]});
      if (j < i) used_by[colour[j]] = i;
    }
    int32_t k = 0;
    while (used_by[k] == i) ++k;
    colour[i] = k;
  }
  return colour;
}

at::Tensor probe_vectors(const std::vector<int32_t>& colour, int64_t num_colours, bool random_phases, uint64_t seed,
                         at::ScalarType type) {
  const int64_t N = static_cast<int64_t>(colour.size());
  at::Tensor theta = at::zeros({N, 2}, at::kDouble);
  if (random_phases) {
    double* th = theta.data_ptr<double>();
    for (int64_t k = 0; k < 2 * N; ++k) th[k] = 2.0 * kPi * uniform_hash(seed, static_cast<uint64_t>(k));
  }
  at::Tensor phase = at::polar(at::ones_like(theta), theta).to(type);
  at::Tensor cols = at::empty({N}, at::kLong);
  for (int64_t i = 0; i < N; ++i) cols.data_ptr<int64_t>()[i] = 2 * static_cast<int64_t>(colour[i]);
  at::Tensor rows = at::arange(N, at::kLong);
  at::Tensor probes = at::zeros({N, 2, 2 * num_colours}, type);
  for (int s = 0; s < 2; ++s) probes.select(1, s).index_put_({rows, cols + s}, phase.select(1, s));
  return probes;
}

}  // namespace spinforce
