#pragma once
// Per-element arithmetic of the kernel polynomial method, shared by the OpenMP loops
// (electrons/kpm.cpp) and the CUDA kernels (cuda/kpm.cu). No torch headers: the CUDA
// compile-only check includes this file.
//
// A block of R vectors is stored as (N, 2, R) complex, element (i, s, r) at (2 i + s) R + r,
// so the R columns of one spin orbital are contiguous. Probe vector r has its non-zeros on
// the sites of one colour c and one spin s with r = 2 c + s, value phase(i, s).
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
  const int32_t* colour;     // (N,) probing colour of each site
  const Cx<T>* phase;        // (N, 2) probe-vector entry of (i, s)
  int64_t num_sites;
  int K;
  int R;
};

// y(i,:,r) = scale * (H~ x)(i,:,r) + zcoef * z(i,:,r) + src * Rprobe(i,:,r), both spins.
// y may alias z (each element reads z only at its own index). Returns the contribution of
// this element to Re <Rprobe, y>, so that moments accumulate during the sweep.
template <class T>
SPINFORCE_HD double chebyshev_element(const Stencil<T>& st, int64_t i, int r, const Cx<T>* x, const Cx<T>* z,
                                      Cx<T>* y, T scale, T zcoef, T src) {
  const int64_t R = st.R;
  T hr0 = 0, hi0 = 0, hr1 = 0, hi1 = 0;  // hopping part of (H~ x)(i, s, r)
  const int64_t* nb = st.neighbors + i * st.K;
  for (int a = 0; a < st.K; ++a) {
    const Cx<T>* xj = x + 2 * nb[a] * R + r;
    const T t = st.hopping[a];
    hr0 += t * xj[0].re;
    hi0 += t * xj[0].im;
    hr1 += t * xj[R].re;
    hi1 += t * xj[R].im;
  }
  const Cx<T>* h = st.onsite + 4 * i;
  const Cx<T> x0 = x[2 * i * R + r], x1 = x[(2 * i + 1) * R + r];
  hr0 += h[0].re * x0.re - h[0].im * x0.im + h[1].re * x1.re - h[1].im * x1.im;
  hi0 += h[0].re * x0.im + h[0].im * x0.re + h[1].re * x1.im + h[1].im * x1.re;
  hr1 += h[2].re * x0.re - h[2].im * x0.im + h[3].re * x1.re - h[3].im * x1.im;
  hi1 += h[2].re * x0.im + h[2].im * x0.re + h[3].re * x1.im + h[3].im * x1.re;

  const int64_t k0 = 2 * i * R + r, k1 = k0 + R;
  const Cx<T> z0 = z[k0], z1 = z[k1];
  Cx<T> y0{scale * hr0 + zcoef * z0.re, scale * hi0 + zcoef * z0.im};
  Cx<T> y1{scale * hr1 + zcoef * z1.re, scale * hi1 + zcoef * z1.im};
  // The probe vectors are non-zero at (i, s) only in column r = 2 colour(i) + s.
  const int rc = 2 * st.colour[i];
  double dot = 0.0;
  if (r == rc) {
    const Cx<T> p = st.phase[2 * i];
    y0.re += src * p.re;
    y0.im += src * p.im;
    dot += static_cast<double>(p.re) * y0.re + static_cast<double>(p.im) * y0.im;
  } else if (r == rc + 1) {
    const Cx<T> p = st.phase[2 * i + 1];
    y1.re += src * p.re;
    y1.im += src * p.im;
    dot += static_cast<double>(p.re) * y1.re + static_cast<double>(p.im) * y1.im;
  }
  y[k0] = y0;
  y[k1] = y1;
  return dot;
}

// g[0..7] += on-site outer product a(i,s,r) conj(b(i,s',r)) for s, s' in {0, 1}, stored as
// (re, im) of the entries 00, 01, 10, 11.
template <class T>
SPINFORCE_HD void accumulate_onsite(int64_t i, int r, int64_t R, const Cx<T>* a, const Cx<T>* b, double* g) {
  const Cx<T> a0 = a[2 * i * R + r], a1 = a[(2 * i + 1) * R + r];
  const Cx<T> b0 = b[2 * i * R + r], b1 = b[(2 * i + 1) * R + r];
  const double a0r = a0.re, a0i = a0.im, a1r = a1.re, a1i = a1.im;
  const double b0r = b0.re, b0i = b0.im, b1r = b1.re, b1i = b1.im;
  g[0] += a0r * b0r + a0i * b0i;  // 00
  g[1] += a0i * b0r - a0r * b0i;
  g[2] += a0r * b1r + a0i * b1i;  // 01
  g[3] += a0i * b1r - a0r * b1i;
  g[4] += a1r * b0r + a1i * b0i;  // 10
  g[5] += a1i * b0r - a1r * b0i;
  g[6] += a1r * b1r + a1i * b1i;  // 11
  g[7] += a1i * b1r - a1r * b1i;
}

}  // namespace kpm
}  // namespace spinforce
