#pragma once
// Marks per-element arithmetic shared by the CPU loops in cpp/ and the CUDA kernels in cuda/.
#if defined(__CUDACC__)
#define SPINFORCE_HD __host__ __device__ __forceinline__
#else
#define SPINFORCE_HD inline
#endif
