#include <pybind11/stl.h>

#include <cmath>
#include <optional>

#include "bindings/bindings.hpp"
#include "descriptors/invariants_ops.hpp"
#include "ml/manifest.hpp"
#include "ml/ml_force_field.hpp"

namespace spinforce {

void bind_ml(py::module_& m) {
  // The descriptor versions the C++ provider accepts (ml/manifest.hpp): kind -> version.
  m.def("_descriptor_versions", [] {
    py::dict out;
    for (const auto& d : manifest::kDescriptorVersions) out[py::str(d.kind)] = d.version;
    return out;
  });
  // The order of descriptor_invariants' plan tensors: Descriptor builds the list by these names.
  py::tuple plan_tensors(static_cast<size_t>(descriptors::kNumPlanTensors));
  for (int64_t k = 0; k < descriptors::kNumPlanTensors; ++k) plan_tensors[k] = descriptors::kPlanTensorNames[k];
  m.attr("invariant_plan_tensors") = plan_tensors;
  py::class_<MLForceField, FieldProvider, std::shared_ptr<MLForceField>>(m, "MLForceField")
      .def(py::init([](const std::string& path, std::shared_ptr<Lattice> lattice, const std::string& device,
                       std::optional<std::string> dtype) {
             return std::make_shared<MLForceField>(path, std::move(lattice), device, dtype.value_or(""));
           }),
           py::arg("path"), py::arg("lattice"), py::kw_only(), py::arg("device") = "cpu",
           py::arg("dtype") = py::none())
      .def_property_readonly("dtype", [](const MLForceField& f) {
        return std::string(f.dtype() == at::kFloat ? "float32" : "float64");
      })
      .def_property_readonly("lattice_kind", &MLForceField::lattice_kind)
      .def_property_readonly("descriptor_kind", &MLForceField::descriptor_kind)
      .def_property_readonly("descriptor_version", &MLForceField::descriptor_version)
      .def_property_readonly("device", &MLForceField::device)
      .def_property_readonly("committee_size", &MLForceField::committee_size)
      .def_property_readonly("uncertainty_threshold",
                             [](const MLForceField& f) -> std::optional<double> {
                               if (std::isnan(f.uncertainty_threshold())) return std::nullopt;
                               return f.uncertainty_threshold();
                             })
      .def_property_readonly("neighbors", &MLForceField::neighbors)
      .def_property_readonly("neighbor_offsets", &MLForceField::neighbor_offsets)
      .def_property_readonly("format", &MLForceField::format)
      .def("_site_energies", &MLForceField::site_energies, py::arg("spins"))
      .def_property_readonly("_workspace", &workspace_stats<MLForceField>);
}

}  // namespace spinforce
