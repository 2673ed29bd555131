#pragma once
// Per-site arithmetic of the local spin variables used by the descriptors: bond variables
// S_p . S_q and scalar chiralities S_a . (S_b x S_c) of one site's neighbourhood patch.
// Shared by the OpenMP loops (spin_variables_cpu.cpp) and the CUDA kernels (cuda/descriptors.cu),
// so both run the same arithmetic. Torch-free on purpose: the nvcc compile-only check includes it.
// Row arguments are pointers (CPU, row-major) or Strided rows (CUDA, feature-major); the index
// tables pairs and triangles are plain pointers shared by all sites.
//
// A patch is the (M, 3) block of spins read by one site: row 0 the site itself, row 1 + a the
// site at neighbour offset a. Variables are listed as patch-row pairs and triples.
#include <cstdint>
#include <type_traits>
#include <utility>

#include "common/hd.hpp"

namespace spinforce {
namespace descriptors {

// The element type behind a row (pointer or Strided).
template <class Row>
using row_value_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<Row>()[0])>>;

template <class A, class B>
SPINFORCE_HD auto dot3(A a, B b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

template <class A, class B, class Out>
SPINFORCE_HD void cross3(A a, B b, Out out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

template <class A, class B, class C>
SPINFORCE_HD auto triple3(A a, B b, C c) {
  row_value_t<A> bc[3];
  cross3(b, c, bc);
  return dot3(a, bc);
}

// out[v] for one site: first the nb bonds, then the nt triangles.
template <class Patch, class Out>
SPINFORCE_HD void site_variables(Patch patch, const int64_t* pairs, int64_t nb, const int64_t* triangles, int64_t nt,
                                 Out out) {
  for (int64_t v = 0; v < nb; ++v) out[v] = dot3(patch + 3 * pairs[2 * v], patch + 3 * pairs[2 * v + 1]);
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t* tri = triangles + 3 * t;
    out[nb + t] = triple3(patch + 3 * tri[0], patch + 3 * tri[1], patch + 3 * tri[2]);
  }
}

// Vector-Jacobian product for one site: grad_patch (M,3) = sum_v grad[v] d out[v] / d patch.
// grad_patch must be zeroed by the caller.
template <class Patch, class Grad, class GradPatch>
SPINFORCE_HD void site_variables_vjp(Patch patch, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                                     int64_t nt, Grad grad, GradPatch grad_patch) {
  using T = row_value_t<Patch>;
  for (int64_t v = 0; v < nb; ++v) {
    const int64_t p = pairs[2 * v], q = pairs[2 * v + 1];
    const T g = grad[v];
    for (int k = 0; k < 3; ++k) {
      grad_patch[3 * p + k] += g * patch[3 * q + k];
      grad_patch[3 * q + k] += g * patch[3 * p + k];
    }
  }
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t a = triangles[3 * t], b = triangles[3 * t + 1], c = triangles[3 * t + 2];
    const T g = grad[nb + t];
    T bc[3], ca[3], ab[3];
    cross3(patch + 3 * b, patch + 3 * c, bc);
    cross3(patch + 3 * c, patch + 3 * a, ca);
    cross3(patch + 3 * a, patch + 3 * b, ab);
    for (int k = 0; k < 3; ++k) {
      grad_patch[3 * a + k] += g * bc[k];
      grad_patch[3 * b + k] += g * ca[k];
      grad_patch[3 * c + k] += g * ab[k];
    }
  }
}

// Second-order terms for one site, given a tangent u (M,3) of the patch (the incoming gradient
// of grad_patch in a double backward):
//   jvp[v]        = d out[v] / d patch . u                      (gradient w.r.t. grad)
//   hvp (M,3)    += sum_v grad[v] d^2 out[v] / d patch^2 . u     (gradient w.r.t. patch)
// hvp must be zeroed by the caller.
template <class Patch, class Grad, class U, class Jvp, class Hvp>
SPINFORCE_HD void site_variables_second(Patch patch, const int64_t* pairs, int64_t nb, const int64_t* triangles,
                                        int64_t nt, Grad grad, U u, Jvp jvp, Hvp hvp) {
  using T = row_value_t<Patch>;
  for (int64_t v = 0; v < nb; ++v) {
    const int64_t p = pairs[2 * v], q = pairs[2 * v + 1];
    const auto sp = patch + 3 * p;
    const auto sq = patch + 3 * q;
    jvp[v] = dot3(u + 3 * p, sq) + dot3(sp, u + 3 * q);
    const T g = grad[v];
    for (int k = 0; k < 3; ++k) {
      hvp[3 * p + k] += g * u[3 * q + k];
      hvp[3 * q + k] += g * u[3 * p + k];
    }
  }
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t a = triangles[3 * t], b = triangles[3 * t + 1], c = triangles[3 * t + 2];
    const auto sa = patch + 3 * a, sb = patch + 3 * b, sc = patch + 3 * c;
    const auto ua = u + 3 * a, ub = u + 3 * b, uc = u + 3 * c;
    jvp[nb + t] = triple3(ua, sb, sc) + triple3(sa, ub, sc) + triple3(sa, sb, uc);
    const T g = grad[nb + t];
    // d/dS of ua.(sb x sc) + ub.(sc x sa) + uc.(sa x sb).
    T x1[3], x2[3];
    cross3(sb, uc, x1);  // from uc.(sa x sb) = sa.(sb x uc)
    cross3(ub, sc, x2);  // from ub.(sc x sa) = sa.(ub x sc)
    for (int k = 0; k < 3; ++k) hvp[3 * a + k] += g * (x1[k] + x2[k]);
    cross3(sc, ua, x1);  // ua.(sb x sc) = sb.(sc x ua)
    cross3(uc, sa, x2);  // uc.(sa x sb) = sb.(uc x sa)
    for (int k = 0; k < 3; ++k) hvp[3 * b + k] += g * (x1[k] + x2[k]);
    cross3(ua, sb, x1);  // ua.(sb x sc) = sc.(ua x sb)
    cross3(sa, ub, x2);  // ub.(sc x sa) = sc.(sa x ub)
    for (int k = 0; k < 3; ++k) hvp[3 * c + k] += g * (x1[k] + x2[k]);
  }
}

}  // namespace descriptors
}  // namespace spinforce
