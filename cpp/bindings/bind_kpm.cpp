#include <pybind11/stl.h>

#include "bindings/bindings.hpp"
#include "common/spins.hpp"
#include "electrons/kpm.hpp"

namespace spinforce {

void bind_kpm(py::module_& m) {
  py::class_<KPM, FieldProvider, std::shared_ptr<KPM>>(m, "KPM")
      .def(py::init([](std::shared_ptr<SDModel> model, int64_t moments, std::optional<double> probing_distance,
                       uint64_t seed, const std::string& dtype, std::optional<std::pair<double, double>> bounds) {
             KPMSettings s;
             s.moments = moments;
             s.probing_distance = probing_distance;
             s.seed = seed;
             s.dtype = dtype;
             s.bounds = bounds;
             return std::make_shared<KPM>(std::move(model), std::move(s));
           }),
           py::arg("model"), py::kw_only(), py::arg("moments"), py::arg("probing_distance"), py::arg("seed"),
           py::arg("dtype"), py::arg("bounds"))
      .def_property_readonly("moments", [](const KPM& k) { return k.settings().moments; })
      .def_property_readonly("probing_distance", [](const KPM& k) { return k.settings().probing_distance; })
      .def_property_readonly("seed", [](const KPM& k) { return k.settings().seed; })
      .def_property_readonly("dtype", [](const KPM& k) { return k.settings().dtype; })
      .def_property_readonly("num_colours", &KPM::num_colours)
      .def_property_readonly("num_probes", &KPM::num_probes)
      .def_property_readonly("bounds",
                             [](const KPM& k) { return std::make_pair(k.center() - k.half_width(), k.center() + k.half_width()); })
      .def_property_readonly("colours", &KPM::colours)
      .def_property_readonly("_workspace", &workspace_stats<KPM>)
      .def("_moments",
           [](KPM& k, const at::Tensor& spins) {
             at::Tensor s = checked_spins(spins, k.num_sites());
             py::gil_scoped_release release;
             return k.moments(s);
           },
           py::arg("spins"))
      .def("_chebyshev_steps",
           [](KPM& k, const at::Tensor& spins, int64_t steps) {
             at::Tensor s = checked_spins(spins, k.num_sites());
             py::gil_scoped_release release;
             k.chebyshev_steps(s, steps);
           },
           py::arg("spins"), py::arg("steps"));

  m.def("_kpm_density_of_states", &kpm_density_of_states, py::arg("moments"), py::arg("center"),
        py::arg("half_width"), py::arg("energies"));
}

}  // namespace spinforce
