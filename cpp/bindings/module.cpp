#include "bindings/bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "spinforce C++ core: lattices, electron solvers, descriptors, dynamics";
  m.attr("torch_version") = SPINFORCE_TORCH_VERSION;
#ifdef SPINFORCE_WITH_CUDA
  m.attr("cuda_kernels") = true;
  m.attr("cuda_architectures") = SPINFORCE_CUDA_ARCHITECTURES;
#else
  m.attr("cuda_kernels") = false;
#endif
  spinforce::bind_lattice(m);
  spinforce::bind_electrons(m);
  spinforce::bind_kpm(m);
  spinforce::bind_dynamics(m);
  spinforce::bind_ml(m);
}
