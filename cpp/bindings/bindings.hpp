#pragma once
// Each subsystem binds itself into spinforce._core from its own translation unit.
#include <torch/python.h>

namespace spinforce {
namespace py = pybind11;

void bind_lattice(py::module_& m);
void bind_electrons(py::module_& m);
void bind_kpm(py::module_& m);
void bind_dynamics(py::module_& m);
void bind_ml(py::module_& m);

}  // namespace spinforce
