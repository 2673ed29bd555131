#include <pybind11/stl.h>

#include "bindings/bindings.hpp"
#include "lattice/lattice.hpp"

namespace spinforce {
namespace {

std::vector<Offset> offsets_from(const at::Tensor& offsets, int dim) {
  // Read on the host: offsets may come from a model that lives on a GPU.
  at::Tensor o = offsets.to(at::kCPU, at::kLong).contiguous();
  if (o.dim() != 2 || o.size(1) != dim)
    throw std::invalid_argument("offsets must have shape (m, " + std::to_string(dim) + ")");
  std::vector<Offset> out(o.size(0), Offset{0, 0, 0});
  auto a = o.accessor<int64_t, 2>();
  for (int64_t i = 0; i < o.size(0); ++i)
    for (int d = 0; d < dim; ++d) out[i][d] = a[i][d];
  return out;
}

at::Tensor offsets_to(const std::vector<Offset>& offsets, int dim) {
  at::Tensor o = at::empty({static_cast<int64_t>(offsets.size()), dim}, at::kLong);
  auto a = o.accessor<int64_t, 2>();
  for (size_t i = 0; i < offsets.size(); ++i)
    for (int d = 0; d < dim; ++d) a[i][d] = offsets[i][d];
  return o;
}

}  // namespace

static py::dict kind_dict(const LatticeKind& k) {
  py::dict d;
  d["name"] = k.name;
  d["dim"] = k.dim;
  d["point_group"] = k.point_group;
  d["orthogonal"] = k.orthogonal;
  d["triangles"] = k.triangles;
  d["bipartite"] = k.bipartite;
  d["planar"] = k.planar();
  return d;
}

void bind_lattice(py::module_& m) {
  // The table of lattice kinds (lattice/lattice.hpp): name -> dim, point group, capabilities.
  m.def("_lattice_kinds", [] {
    py::dict out;
    for (const LatticeKind& k : lattice_kinds()) out[py::str(k.name)] = kind_dict(k);
    return out;
  });

  py::class_<Lattice, std::shared_ptr<Lattice>>(m, "Lattice", py::dynamic_attr())
      .def(py::init<const std::string&, const std::vector<int64_t>&>(), py::arg("kind"), py::arg("shape"))
      .def_property_readonly("kind", &Lattice::kind)
      .def_property_readonly("kind_info", [](const Lattice& l) { return kind_dict(l.kind_info()); })
      .def_property_readonly("dim", &Lattice::dim)
      .def_property_readonly("shape", [](const Lattice& l) { return py::tuple(py::cast(l.shape())); })
      .def_property_readonly("num_sites", &Lattice::num_sites)
      .def_property_readonly("point_group_name", &Lattice::point_group_name)
      .def_property_readonly("primitive_vectors",
                             [](const Lattice& l) {
                               at::Tensor a = at::empty({l.dim(), l.dim()}, at::kDouble);
                               for (int i = 0; i < l.dim(); ++i)
                                 for (int k = 0; k < l.dim(); ++k) a[i][k] = l.primitive_vectors()[i][k];
                               return a;
                             })
      .def_property_readonly("point_group_matrices",
                             [](const Lattice& l) {
                               const auto& G = l.point_group();
                               at::Tensor g = at::empty({static_cast<int64_t>(G.size()), l.dim(), l.dim()}, at::kLong);
                               for (size_t n = 0; n < G.size(); ++n)
                                 for (int i = 0; i < l.dim(); ++i)
                                   for (int k = 0; k < l.dim(); ++k) g[n][i][k] = G[n][i][k];
                               return g;
                             })
      .def("coords_of", [](const Lattice& l, int64_t site) {
             const Offset c = l.coords(site);
             return py::tuple(py::cast(std::vector<int64_t>(c.begin(), c.begin() + l.dim())));
           }, py::arg("site"))
      .def("shell_distance", &Lattice::shell_distance, py::arg("k"))
      .def("shell_offsets", [](const Lattice& l, int k) { return offsets_to(l.shell_offsets(k), l.dim()); },
           py::arg("k"))
      .def("offsets_within", [](const Lattice& l, double r) { return offsets_to(l.offsets_within(r), l.dim()); },
           py::arg("radius"))
      .def("neighbor_table",
           [](const Lattice& l, const at::Tensor& offsets) { return l.neighbor_table(offsets_from(offsets, l.dim())); },
           py::arg("offsets"))
      .def("_permutations",
           [](const Lattice& l, const at::Tensor& offsets) { return l.permutations(offsets_from(offsets, l.dim())); },
           py::arg("offsets"));
}

}  // namespace spinforce
