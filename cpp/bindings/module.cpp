#include "bindings/bindings.hpp"
#include "common/limits.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "spinforce C++ core: lattices, electron solvers, descriptors, dynamics";
  m.attr("torch_version") = SPINFORCE_TORCH_VERSION;
#ifdef SPINFORCE_WITH_CUDA
  m.attr("cuda_kernels") = true;
#else
  m.attr("cuda_kernels") = false;
#endif
  // Long loops of the core poll this: Ctrl-C raises KeyboardInterrupt out of them.
  spinforce::set_interrupt_handler([] {
    pybind11::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
  });
  spinforce::bind_lattice(m);
  spinforce::bind_electrons(m);
  spinforce::bind_kpm(m);
  spinforce::bind_dynamics(m);
  spinforce::bind_ml(m);
}
