#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <chrono>

#include "bindings/bindings.hpp"
#include "common/errors.hpp"
#include "common/spins.hpp"
#include "dynamics/llg.hpp"
#include "dynamics/philox.hpp"
#include "providers/counting.hpp"
#include "providers/halo.hpp"
#include "providers/heisenberg.hpp"
#ifdef SPINFORCE_WITH_CUDA
#include "dynamics/llg_cuda.hpp"
#endif

namespace spinforce {

void bind_dynamics(py::module_& m) {
  py::class_<Heisenberg, FieldProvider, std::shared_ptr<Heisenberg>>(m, "Heisenberg")
      .def(py::init([](std::shared_ptr<Lattice> lattice, double J1, double J2, std::array<double, 3> field,
                       double anisotropy, std::array<double, 3> axis) {
             return std::make_shared<Heisenberg>(std::move(lattice), J1, J2, field, anisotropy, axis);
           }),
           py::arg("lattice"), py::kw_only(), py::arg("J1"), py::arg("J2") = 0.0,
           py::arg("field") = std::array<double, 3>{0.0, 0.0, 0.0}, py::arg("anisotropy") = 0.0,
           py::arg("axis") = std::array<double, 3>{0.0, 0.0, 1.0})
      .def_property_readonly("lattice", [](const Heisenberg& h) { return std::const_pointer_cast<Lattice>(h.lattice_ptr()); })
      .def_property_readonly("J1", &Heisenberg::J1)
      .def_property_readonly("J2", &Heisenberg::J2)
      .def_property_readonly("field", &Heisenberg::field)
      .def_property_readonly("anisotropy", &Heisenberg::anisotropy)
      .def_property_readonly("axis", &Heisenberg::axis)
      .def("_compute_tensor",
           [](Heisenberg& h, const at::Tensor& spins) { return h.compute_tensor(checked_spins(spins, h.num_sites())); },
           py::arg("spins"));

  py::class_<CountingProvider, FieldProvider, std::shared_ptr<CountingProvider>>(m, "_CountingProvider")
      .def(py::init<std::shared_ptr<FieldProvider>>(), py::arg("provider"))
      .def_property_readonly("evaluations", &CountingProvider::evaluations);

  // A slab of a lattice split over processes (spinforce.distributed builds it).
  py::class_<HaloProvider, FieldProvider, std::shared_ptr<HaloProvider>>(m, "_HaloProvider")
      .def(py::init<std::shared_ptr<FieldProvider>, int64_t, int64_t, HaloProvider::Exchange>(), py::arg("provider"),
           py::arg("num_sites"), py::arg("first"), py::arg("exchange"))
      .def_property_readonly("provider", &HaloProvider::inner)
      .def_property_readonly("first", &HaloProvider::first);

  // The registered integrators (dynamics/integrators.hpp), the default first.
  m.def("_integrators", &Integrator::names);

  py::class_<LLG, std::shared_ptr<LLG>>(m, "LLG")
      .def(py::init([](std::shared_ptr<FieldProvider> provider, double dt, double alpha, double kT, double gamma,
                       const std::string& integrator, int64_t seed, int64_t site_offset) {
             require(seed >= 0, "seed must be an integer >= 0, got ", seed);
             require(site_offset >= 0, "site_offset must be an integer >= 0, got ", site_offset);
             return std::make_shared<LLG>(std::move(provider), dt, alpha, kT, gamma, integrator,
                                          static_cast<uint64_t>(seed), static_cast<uint64_t>(site_offset));
           }),
           py::arg("provider"), py::kw_only(), py::arg("dt"), py::arg("alpha"), py::arg("kT") = 0.0,
           py::arg("gamma") = 1.0, py::arg("integrator") = "sib", py::arg("seed") = 0, py::arg("site_offset") = 0)
      .def_property_readonly("provider", &LLG::provider_ptr)
      .def_property_readonly("dt", &LLG::dt)
      .def_property_readonly("alpha", &LLG::alpha)
      .def_property_readonly("kT", &LLG::kT)
      .def_property_readonly("gamma", &LLG::gamma)
      .def_property_readonly("integrator", &LLG::integrator_name)
      .def_property_readonly("seed", [](const LLG& l) { return static_cast<int64_t>(l.seed()); })
      .def_property_readonly("site_offset", [](const LLG& l) { return static_cast<int64_t>(l.site_offset()); })
      // frame(step, spins, result) gets a copy of the spins. progress(step) is called from the
      // loop at most every `poll_seconds` of wall time; Ctrl-C is checked at the same moments.
      .def("_run",
           [](LLG& llg, const at::Tensor& spins, int64_t steps, int64_t every, int64_t start_step,
              std::function<void(int64_t, at::Tensor, FieldResult)> frame, std::function<void(int64_t)> progress,
              double poll_seconds) {
             at::Tensor s = checked_spins(spins, llg.provider().num_sites());
             LLG::FrameCallback on_frame;
             if (frame) {
               on_frame = [&frame](int64_t step, const at::Tensor& S, const FieldResult& r) {
                 frame(step, S.clone(), r);  // pybind11 takes the GIL for the call
               };
             }
             using Clock = std::chrono::steady_clock;
             auto last = Clock::now();
             LLG::PollCallback on_poll = [&](int64_t step) {
               const auto now = Clock::now();
               if (std::chrono::duration<double>(now - last).count() < poll_seconds && step != start_step + steps)
                 return;
               last = now;
               py::gil_scoped_acquire gil;
               if (PyErr_CheckSignals() != 0) throw py::error_already_set();
               if (progress) progress(step);
             };
             py::gil_scoped_release release;
             return llg.run(s, steps, every, start_step, on_frame, on_poll);
           },
           py::arg("spins"), py::arg("steps"), py::arg("every"), py::arg("start_step"), py::arg("frame"),
           py::arg("progress"), py::arg("poll_seconds") = 0.2);

  // Exposed for tests: the Philox block and the Gaussian triple of (seed, step, site).
  m.def("_philox4x32_10",
        [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
          const Philox4x32 r = philox4x32_10(Philox4x32{{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
          return std::array<uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
        },
        py::arg("counter"), py::arg("key"));
  m.def("_philox_normals",
        [](uint64_t seed, uint64_t step, uint64_t site) {
          std::array<double, 4> out{};
          philox_normals(seed, step, site, out.data());
          return out;
        },
        py::arg("seed"), py::arg("step"), py::arg("site"));
#ifdef SPINFORCE_WITH_CUDA
  // The same normals drawn by the CUDA kernel for sites 0..num_sites-1: (num_sites, 4) on `device`.
  m.def("_philox_normals_cuda",
        [](uint64_t seed, uint64_t step, int64_t num_sites, const std::string& device) {
          require(num_sites >= 0, "num_sites must be >= 0, got ", num_sites);
          const at::Device d(device);
          require(d.is_cuda(), "device must be a CUDA device, got '", device, "'");
          at::Tensor out = at::empty({num_sites, 4}, at::TensorOptions().dtype(at::kDouble).device(d));
          philox_normals_cuda(seed, step, num_sites, out.data_ptr<double>(), out.get_device());
          return out;
        },
        py::arg("seed"), py::arg("step"), py::arg("num_sites"), py::arg("device") = "cuda");
#endif
}

}  // namespace spinforce
