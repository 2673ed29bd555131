#include "ml/ml_force_field.hpp"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include "common/errors.hpp"
#include "ml/manifest.hpp"

namespace spinforce {

namespace {
using namespace manifest;

// ValueError unless this spinforce has descriptor `kind` at `version`.
void require_descriptor(const std::string& path, const std::string& kind, int64_t version) {
  std::string known;
  for (const DescriptorVersion& d : kDescriptorVersions) {
    if (kind == d.kind) {
      require(version == d.version, path, " was exported with the ", kind, " descriptor version ", version,
              "; this spinforce has version ", d.version, ": retrain or re-export the model");
      return;
    }
    known += (known.empty() ? "'" : ", '") + std::string(d.kind) + "'";
  }
  value_error(path, " uses the descriptor kind '", kind, "', which this spinforce lacks (it has ", known, ")");
}

c10::IValue attribute(const torch::jit::Module& m, const std::string& path, const char* name) {
  if (!m.hasattr(name))
    value_error(path, " is not a spinforce TorchScript force field: it has no attribute '", name,
                "' (write one with `spinforce export MODEL --torchscript OUT`)");
  return m.attr(name);
}
}  // namespace

struct MLForceField::Impl {
  torch::jit::Module module;
  at::Device device{at::kCPU};
};

MLForceField::MLForceField(const std::string& path, std::shared_ptr<const Lattice> lattice,
                           const std::string& device, const std::string& dtype)
    : impl_(std::make_unique<Impl>()), lattice_(std::move(lattice)) {
  require(lattice_ != nullptr, "lattice must be a spinforce.Lattice");
  try {
    impl_->device = at::Device(device);
  } catch (const c10::Error&) {
    value_error("device must be 'cpu', 'cuda' or 'cuda:<index>', got '", device, "'");
  }
  require(dtype.empty() || dtype == "float32" || dtype == "float64",
          "dtype must be 'float32', 'float64' or None (the model's own), got '", dtype, "'");
  if (impl_->device.is_cuda() && !at::hasCUDA())
    value_error("device '", device, "' asked for, but this torch has no CUDA device available");
  try {
    impl_->module = torch::jit::load(path, impl_->device);
  } catch (const c10::Error& e) {
    value_error("cannot load '", path, "' as a TorchScript force field (", e.what_without_backtrace(),
                "); model files from `spinforce train` must first be exported with "
                "`spinforce export MODEL --torchscript OUT`");
  }
  auto& m = impl_->module;
  m.eval();
  // Fields need d(energy)/d(spins) only; weight gradients would be computed too otherwise.
  for (at::Tensor p : m.parameters()) p.set_requires_grad(false);
  const std::string format = attribute(m, path, kFormatKey).toStringRef();
  require(format == kFormat, path, " has format '", format, "', expected '", kFormat, "'");
  const int64_t version = attribute(m, path, kFormatVersionKey).toInt();
  require(version == kFormatVersion, path, " has TorchScript format_version ", version,
          "; this spinforce reads version ", kFormatVersion);
  lattice_kind_ = attribute(m, path, kLatticeKindKey).toStringRef();
  descriptor_kind_ = attribute(m, path, kDescriptorKindKey).toStringRef();
  descriptor_version_ = attribute(m, path, kDescriptorVersionKey).toInt();
  require_descriptor(path, descriptor_kind_, descriptor_version_);
  require(lattice_kind_ == lattice_->kind(), "the model ", path, " was trained on the '", lattice_kind_,
          "' lattice; it cannot run on a '", lattice_->kind(), "' lattice");
  // The network's dtype: that of its weights (a committee has no top-level feature_mean), or
  // the one asked for. Module::to casts weights and buffers alike, including the dtype
  // reference buffer that forward casts the spins to, so the whole evaluation runs in it.
  // Floating tensors only: index buffers stay integer (torch::jit::Module::to would cast all).
  if (!dtype.empty()) {
    const at::ScalarType want = dtype == "float32" ? at::kFloat : at::kDouble;
    for (at::Tensor t : m.parameters())
      if (t.is_floating_point()) t.set_data(t.detach().to(want));
    for (at::Tensor t : m.buffers())
      if (t.is_floating_point()) t.set_data(t.detach().to(want));
  }
  for (const at::Tensor& p : m.parameters()) {
    dtype_ = p.scalar_type();
    break;
  }
  if (m.hasattr(kCommitteeSizeKey)) {
    committee_size_ = m.attr(kCommitteeSizeKey).toInt();
    require(committee_size_ >= 2, path, ": committee_size must be >= 2, got ", committee_size_);
    uncertainty_threshold_ = attribute(m, path, kUncertaintyThresholdKey).toDouble();
  }

  // Neighbourhood: the model's offsets, laid on this lattice (ValueError if it is too small).
  at::Tensor offsets = attribute(m, path, kNeighborOffsetsKey).toTensor().to(at::kCPU, at::kLong).contiguous();
  require(offsets.dim() == 2 && offsets.size(1) == lattice_->dim(), path, ": neighbor_offsets has shape ",
          offsets.sizes(), ", expected (m, ", lattice_->dim(), ")");
  std::vector<Offset> list(offsets.size(0), Offset{0, 0, 0});
  auto a = offsets.accessor<int64_t, 2>();
  for (int64_t i = 0; i < offsets.size(0); ++i)
    for (int d = 0; d < lattice_->dim(); ++d) list[i][d] = a[i][d];
  neighbors_ = lattice_->neighbor_table(list).to(impl_->device);
}

MLForceField::~MLForceField() = default;

std::string MLForceField::device() const { return impl_->device.str(); }

FieldResult MLForceField::compute(const at::Tensor& spins) {
  Workspace::Scope scope(workspace_);
  // The module differentiates its energy: autograd must be on even when the caller runs under
  // no_grad or inference mode.
  c10::InferenceMode inference_off(false);
  at::AutoGradMode grad_on(true);
  // TorchScript's optimising executor wraps the network in differentiable subgraphs whose
  // backward was measured ~10 % slower than the plain autograd graph for one field evaluation.
  torch::jit::GraphOptimizerEnabledGuard plain_executor(false);
  const at::Tensor s = spins.to(impl_->device, dtype_);
  auto out = impl_->module.forward({s, neighbors_}).toTuple();
  FieldResult r;
  const at::Tensor energy = out->elements()[0].toTensor().detach();
  if (energy.is_cpu()) {
    r.energy = energy.item<double>();
  } else {
    r.energy_tensor = energy;  // read only when asked for: no device sync per evaluation
  }
  r.fields = out->elements()[1].toTensor().detach().to(spins.device(), at::kDouble).contiguous();
  if (committee_size_ > 1)
    r.uncertainty = out->elements()[2].toTensor().detach().to(spins.device(), at::kDouble).contiguous();
  return r;
}

}  // namespace spinforce
