#pragma once
// The one way every kernel in cuda/ is launched: with the data's device made current for the
// launch (device guard), on torch's current stream of that device (so the kernel is ordered
// with the ATen ops that produce and consume its buffers, under torch.cuda.stream(), graph
// capture and the caching allocator's stream-ordered reuse alike), and with the launch checked
// (an unsupported GPU or a bad configuration raises instead of leaving zeros behind).
// The torch-free compile check (cuda/CMakeLists.txt) builds the same helper with the CUDA
// runtime's own device switch and the calling thread's default stream.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#ifndef SPINFORCE_CUDA_CHECK_ONLY
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#ifndef SPINFORCE_CUDA_ARCHITECTURES
#define SPINFORCE_CUDA_ARCHITECTURES "(not recorded)"
#endif

namespace spinforce {
namespace gpu {

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

[[noreturn]] inline void launch_failed(const char* kernel, int device, cudaError_t err) {
  throw std::runtime_error(std::string("spinforce: CUDA kernel ") + kernel + " failed on cuda:" +
                           std::to_string(device) + ": " + cudaGetErrorString(err) +
                           " (this spinforce has kernels for CUDA architectures " SPINFORCE_CUDA_ARCHITECTURES ")");
}

#ifdef SPINFORCE_CUDA_CHECK_ONLY
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cudaGetDevice(&previous_);
    if (device != previous_) cudaSetDevice(device);
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  cudaStream_t stream() const { return cudaStreamPerThread; }

 private:
  int previous_ = 0;
};
#else
class DeviceScope {
 public:
  explicit DeviceScope(int device)
      : guard_(static_cast<c10::DeviceIndex>(device)),
        stream_(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream()) {}
  cudaStream_t stream() const { return stream_; }

 private:
  c10::cuda::CUDAGuard guard_;
  cudaStream_t stream_;
};
#endif

// kernel<<<grid, block, shared_bytes, current stream of `device`>>>(args...) on `device`.
// Nothing is launched for an empty grid.
template <class... Params, class... Args>
void launch(const char* name, int device, unsigned grid, unsigned block, size_t shared_bytes,
            void (*kernel)(Params...), Args&&... args) {
  if (grid == 0) return;
  const DeviceScope scope(device);
  kernel<<<grid, block, shared_bytes, scope.stream()>>>(std::forward<Args>(args)...);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) launch_failed(name, device, err);
}

}  // namespace gpu
}  // namespace spinforce
