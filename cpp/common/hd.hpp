#pragma once
// Marks per-element arithmetic shared by the CPU loops in cpp/ and the CUDA kernels in cuda/.
#include <cstdint>

#if defined(__CUDACC__)
#define SPINFORCE_HD __host__ __device__ __forceinline__
#else
#define SPINFORCE_HD inline
#endif

namespace spinforce {

// One site's row of a feature-major (width, N) array, addressed like a pointer to the row:
// element k at data[k * stride] with stride = N. The CUDA kernels hand these to the shared
// per-site functions, so that thread i reading element k of its row and thread i + 1 reading
// element k of its own touch neighbouring addresses (coalesced); the CPU loops pass plain
// pointers into row-major (N, width) arrays to the same functions.
template <class T>
struct Strided {
  T* data;
  int64_t stride;
  SPINFORCE_HD T& operator[](int64_t k) const { return data[k * stride]; }
  SPINFORCE_HD Strided operator+(int64_t k) const { return {data + k * stride, stride}; }
};

}  // namespace spinforce
