#include <pybind11/stl.h>

#include "bindings/bindings.hpp"
#include "common/errors.hpp"
#include "common/spins.hpp"
#include "electrons/ed.hpp"
#include "electrons/fermi_dirac.hpp"
#include "electrons/sd_model.hpp"

namespace spinforce {

void bind_electrons(py::module_& m) {
  py::class_<FieldResult>(m, "FieldResult")
      .def_property_readonly("energy", &FieldResult::energy_value)
      .def_readonly("fields", &FieldResult::fields)
      .def_readonly("density", &FieldResult::density)
      .def_readonly("mu", &FieldResult::mu)
      .def_readonly("eigenvalues", &FieldResult::eigenvalues)
      .def_readonly("uncertainty", &FieldResult::uncertainty);

  py::class_<FieldProvider, std::shared_ptr<FieldProvider>>(m, "FieldProvider")
      .def_property_readonly("num_sites", &FieldProvider::num_sites)
      .def_property_readonly("name", &FieldProvider::name)
      // The user-facing entry validates; FieldProvider::compute itself trusts its input so that
      // integrator stages pay no checks.
      .def("_compute",
           [](FieldProvider& p, const at::Tensor& spins) {
             at::Tensor s = checked_spins(spins, p.num_sites());
             py::gil_scoped_release release;
             FieldResult result = p.compute(s);
             require_finite_result(result, p.title());
             return result;
           },
           py::arg("spins"));

  py::class_<SDModel, std::shared_ptr<SDModel>>(m, "SDModel", py::dynamic_attr())
      .def(py::init([](std::shared_ptr<Lattice> lattice, double t, double J, std::optional<double> mu,
                       std::optional<double> filling, double kT, double t2, double t3) {
             return std::make_shared<SDModel>(std::move(lattice), t, J, mu, filling, kT, t2, t3);
           }),
           py::arg("lattice"), py::kw_only(), py::arg("t") = 1.0, py::arg("J"), py::arg("mu") = py::none(),
           py::arg("filling") = py::none(), py::arg("kT") = 0.0, py::arg("t2") = 0.0, py::arg("t3") = 0.0)
      .def_property_readonly("lattice", [](const SDModel& s) { return std::const_pointer_cast<Lattice>(s.lattice_ptr()); })
      .def_property_readonly("t", &SDModel::t)
      .def_property_readonly("t2", &SDModel::t2)
      .def_property_readonly("t3", &SDModel::t3)
      .def_property_readonly("J", &SDModel::J)
      .def_property_readonly("kT", &SDModel::kT)
      .def_property_readonly("mu", &SDModel::mu)
      .def_property_readonly("filling", &SDModel::filling)
      .def_property_readonly("num_sites", &SDModel::num_sites)
      .def_property_readonly("spectral_bound", &SDModel::gershgorin_bound);

  py::class_<ExactDiagonalization, FieldProvider, std::shared_ptr<ExactDiagonalization>>(m, "ExactDiagonalization")
      .def(py::init([](std::shared_ptr<SDModel> model) { return std::make_shared<ExactDiagonalization>(std::move(model)); }),
           py::arg("model"))
      .def_property_readonly("_workspace", &workspace_stats<ExactDiagonalization>)
      .def("_hamiltonian",
           [](ExactDiagonalization& ed, const at::Tensor& spins) {
             return ed.hamiltonian(checked_spins(spins, ed.num_sites()));
           },
           py::arg("spins"));

  m.def("_solve_mu",
        [](const at::Tensor& levels, double target, double kT, std::optional<at::Tensor> weights) {
          at::Tensor e = levels.to(at::kCPU, at::kDouble).contiguous().view(-1);
          at::Tensor w;
          if (weights) {
            w = weights->to(at::kCPU, at::kDouble).contiguous().view(-1);
            require(w.numel() == e.numel(), "weights must have one entry per level (", e.numel(), "), got ", w.numel());
          }
          return solve_mu(e.data_ptr<double>(), w.defined() ? w.data_ptr<double>() : nullptr, e.numel(), target, kT);
        },
        py::arg("levels"), py::arg("target"), py::arg("kT"), py::arg("weights") = py::none());
}

}  // namespace spinforce
