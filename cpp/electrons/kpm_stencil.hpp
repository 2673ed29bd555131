#pragma once
// Per-element arithmetic of the kernel polynomial method, shared by the OpenMP loops
// (electrons/kpm.cpp) and the CUDA kernels (cuda/kpm.cu). No torch headers: the CUDA
// compile-only check includes this file.
//
// A block of R vectors is stored as (N, 2, R) complex, element (i, s, r) at (2 i + s) R + r,
// so the R columns of one spin orbital are contiguous.
#include <cstdint>

#include "common/hd.hpp"

namespace spinforce {
namespace kpm {

// Same memory layout as c10::complex<T> and std::complex<T>.
template <class T>
struct Cx {
  T re, im;
};

// The rescaled Hamiltonian H~ = (H - a)/b as a stencil.
template <class T>
struct Stencil {
  const int64_t* neighbors;  // (N, K) site of each hopping partner
  const T* hopping;          // (K,) matrix element (-t_k)/b of each column, spin diagonal
  const Cx<T>* onsite;       // (N, 4) on-site block (h - a)/b, row major: h00 h01 h10 h11
  int64_t num_sites;
  int K;
  int R;
};

// Up to three vectors added site by site, sum_j coef_j v_j (null v_j are skipped).
template <class T>
struct LocalTerms {
  const Cx<T>* v[3] = {nullptr, nullptr, nullptr};
  T coef[3] = {0, 0, 0};
};

// Partial inner products of a chunk: <y, y> and Re <y, x>.
struct ChunkDots {
  double yy = 0.0, yx = 0.0;
};

// y(i,:,r) = scale * (H~ x)(i,:,r) + zcoef * z(i,:,r) + sum_j coef_j v_j(i,:,r), both spins, for
// the W columns r .. r+W-1 (W = 1 per CUDA thread; a larger W on the CPU so that the loops over
// the chunk vectorise). y may alias z (each element reads z only at its own index). Returns
// the chunk's <y, y> and Re <y, x>, from which the moments follow (two per product).
template <int W, class T>
SPINFORCE_HD ChunkDots chebyshev_chunk(const Stencil<T>& st, int64_t i, int r, const Cx<T>* x, const Cx<T>* z,
                                       Cx<T>* y, T scale, T zcoef, const LocalTerms<T>& terms) {
  const int64_t R = st.R;
  const int64_t base = 2 * i * R + r;
  // Interleaved (re, im) views of the chunk of site i, spin up (0) and spin down (1).
  const T* x0 = reinterpret_cast<const T*>(x + base);
  const T* x1 = x0 + 2 * R;
  const Cx<T>* h = st.onsite + 4 * i;
  T a0[2 * W], a1[2 * W];  // (H~ x)(i, s, r + w)
  for (int w = 0; w < W; ++w) {
    const T u_re = x0[2 * w], u_im = x0[2 * w + 1], d_re = x1[2 * w], d_im = x1[2 * w + 1];
    a0[2 * w] = h[0].re * u_re - h[0].im * u_im + h[1].re * d_re - h[1].im * d_im;
    a0[2 * w + 1] = h[0].re * u_im + h[0].im * u_re + h[1].re * d_im + h[1].im * d_re;
    a1[2 * w] = h[2].re * u_re - h[2].im * u_im + h[3].re * d_re - h[3].im * d_im;
    a1[2 * w + 1] = h[2].re * u_im + h[2].im * u_re + h[3].re * d_im + h[3].im * d_re;
  }
  // Hopping is real and spin diagonal: an axpy on the interleaved reals of each neighbour.
  const int64_t* nb = st.neighbors + i * st.K;
  for (int a = 0; a < st.K; ++a) {
    const T* xj = reinterpret_cast<const T*>(x + 2 * nb[a] * R + r);
    const T t = st.hopping[a];
    for (int q = 0; q < 2 * W; ++q) {
      a0[q] += t * xj[q];
      a1[q] += t * xj[2 * R + q];
    }
  }
  const T* z0 = reinterpret_cast<const T*>(z + base);
  const T* z1 = z0 + 2 * R;
  for (int q = 0; q < 2 * W; ++q) {
    a0[q] = scale * a0[q] + zcoef * z0[q];
    a1[q] = scale * a1[q] + zcoef * z1[q];
  }
  for (int j = 0; j < 3; ++j) {
    if (terms.v[j] == nullptr) continue;
    const T* v0 = reinterpret_cast<const T*>(terms.v[j] + base);
    const T* v1 = v0 + 2 * R;
    const T c = terms.coef[j];
    for (int q = 0; q < 2 * W; ++q) {
      a0[q] += c * v0[q];
      a1[q] += c * v1[q];
    }
  }
  // Element-wise products first (this loop vectorises; a running sum would not without
  // reassociation), then the short sum over the chunk, in double beyond it.
  T yy[2 * W], yx[2 * W];
  for (int q = 0; q < 2 * W; ++q) {
    yy[q] = a0[q] * a0[q] + a1[q] * a1[q];
    yx[q] = a0[q] * x0[q] + a1[q] * x1[q];
  }
  T* y0 = reinterpret_cast<T*>(y + base);
  T* y1 = y0 + 2 * R;
  for (int q = 0; q < 2 * W; ++q) {  // stores last: no aliasing question for the loops above
    y0[q] = a0[q];
    y1[q] = a1[q];
  }
  ChunkDots dots;
  for (int q = 0; q < 2 * W; ++q) {
    dots.yy += yy[q];
    dots.yx += yx[q];
  }
  return dots;
}

// g[0..7] += sum over the W columns r .. r+W-1 of a(i,s,r) conj(b(i,s',r)) for s, s' in {0, 1},
// stored as (re, im) of the on-site entries 00, 01, 10, 11.
template <int W, class T>
SPINFORCE_HD void accumulate_onsite(int64_t i, int r, int64_t R, const Cx<T>* a, const Cx<T>* b, double* g) {
  const Cx<T>* as[2] = {a + 2 * i * R + r, a + (2 * i + 1) * R + r};
  const Cx<T>* bs[2] = {b + 2 * i * R + r, b + (2 * i + 1) * R + r};
  for (int s = 0; s < 2; ++s)
    for (int t = 0; t < 2; ++t) {
      T re = 0, im = 0;  // partial sums over a short chunk in the working precision
      for (int w = 0; w < W; ++w) {
        re += as[s][w].re * bs[t][w].re + as[s][w].im * bs[t][w].im;
        im += as[s][w].im * bs[t][w].re - as[s][w].re * bs[t][w].im;
      }
      g[2 * (2 * s + t)] += re;
      g[2 * (2 * s + t) + 1] += im;
    }
}

}  // namespace kpm
}  // namespace spinforce
