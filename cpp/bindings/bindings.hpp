#pragma once
// Each subsystem binds itself into spinforce._core from its own translation unit.
#include <torch/python.h>

#include <tuple>

#include "common/workspace.hpp"

namespace spinforce {

// (bytes reserved, blocks served, blocks reused) of a provider's workspace, for tests.
template <class Provider>
std::tuple<size_t, size_t, size_t> workspace_stats(const Provider& p) {
  const Workspace& w = p.workspace();
  return {w.reserved_bytes(), w.blocks_served(), w.blocks_reused()};
}
namespace py = pybind11;

void bind_lattice(py::module_& m);
void bind_electrons(py::module_& m);
void bind_kpm(py::module_& m);
void bind_dynamics(py::module_& m);
void bind_ml(py::module_& m);

}  // namespace spinforce
