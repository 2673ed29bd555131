#pragma once
// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC'11). A draw is a pure function of (seed, step, site), so a run
// is reproducible, a restart needs no generator state, and the CPU loop and the CUDA kernel
// produce the same integers. The counter layout matches at::philox_engine(seed, step, site).
#include <cmath>
#include <cstdint>

#include "common/hd.hpp"

namespace spinforce {

struct Philox4x32 {
  uint32_t v[4];
};

SPINFORCE_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds of Philox4x32 on counter c with key (k0, k1).
SPINFORCE_HD Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c.v[0], hi0, lo0);
    philox_mulhilo(kM1, c.v[2], hi1, lo1);
    c = Philox4x32{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
  }
  return c;
}

// The block keyed by (seed, step, site): counter (site, step) and key seed, 64 bits each.
SPINFORCE_HD Philox4x32 philox_block(uint64_t seed, uint64_t step, uint64_t site) {
  Philox4x32 c{{static_cast<uint32_t>(site), static_cast<uint32_t>(site >> 32), static_cast<uint32_t>(step),
                static_cast<uint32_t>(step >> 32)}};
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in (0, 1] from 32 random bits, exact in double precision.
SPINFORCE_HD double philox_uniform(uint32_t x) { return (static_cast<double>(x) + 1.0) * 0x1p-32; }

// Four standard normals from one block by Box-Muller in double precision. The integers are
// identical on CPU and GPU, and every operation is IEEE double, so the normals agree to the
// accuracy of the two math libraries (glibc's log/sin/cos: under 1 ulp; CUDA's: log 1 ulp,
// sin/cos 2 ulp; i.e. ~4e-16 relative). Single precision differed by 1-2 ulp of a
// float (~1e-7) in about a fifth of the draws. Tails are cut at sqrt(-2 ln 2^-32) = 6.7 sigma
// (probability 3e-11).
SPINFORCE_HD void philox_normals(uint64_t seed, uint64_t step, uint64_t site, double out[4]) {
  const Philox4x32 b = philox_block(seed, step, site);
  constexpr double kTwoPi = 6.283185307179586;
  for (int pair = 0; pair < 2; ++pair) {
    const double r = std::sqrt(-2.0 * std::log(philox_uniform(b.v[2 * pair])));
    const double phi = kTwoPi * philox_uniform(b.v[2 * pair + 1]);
    out[2 * pair] = r * std::cos(phi);
    out[2 * pair + 1] = r * std::sin(phi);
  }
}

}  // namespace spinforce
