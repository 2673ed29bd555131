#include "ml/ml_force_field.hpp"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <cstdlib>
#include <unordered_map>

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

using Metadata = std::unordered_map<std::string, std::string>;

// The metadata of a spinforce .pt2 package, or an empty map if `path` is not one.
Metadata pt2_metadata(const std::string& path) {
  Metadata meta;
  try {
    meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  } catch (const std::exception&) {
    return {};  // not an AOTInductor package (a TorchScript file, or no zip at all)
  }
  auto it = meta.find(kFormatKey);
  return it != meta.end() && it->second == kPt2Format ? meta : Metadata{};
}

const std::string& entry(const Metadata& meta, const std::string& path, const char* key) {
  auto it = meta.find(key);
  if (it == meta.end())
    value_error(path, " is not a spinforce .pt2 force field: its metadata has no '", key,
                "' (write one with `spinforce export MODEL --pt2 OUT`)");
  return it->second;
}

int64_t integer_entry(const Metadata& meta, const std::string& path, const char* key) {
  const std::string& text = entry(meta, path, key);
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  require(!text.empty() && *end == '\0', path, ": metadata '", key, "' must be an integer, got '", text, "'");
  return value;
}

// neighbor_offsets as written by json.dumps of a list of integer lists: "[[1, 0], [0, 1]]".
at::Tensor offsets_entry(const Metadata& meta, const std::string& path) {
  const std::string& text = entry(meta, path, kNeighborOffsetsKey);
  std::vector<int64_t> values;
  int64_t rows = 0;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '[') {
      ++rows;
      ++i;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      char* end = nullptr;
      values.push_back(std::strtoll(text.c_str() + i, &end, 10));
      i = static_cast<size_t>(end - text.c_str());
    } else {
      require(c == ']' || c == ',' || c == ' ', path, ": metadata 'neighbor_offsets' is not a list of integer lists");
      ++i;
    }
  }
  --rows;  // the outer list
  require(rows > 0 && values.size() % rows == 0, path, ": metadata 'neighbor_offsets' is not a list of integer lists");
  return at::tensor(values, at::kLong).reshape({rows, static_cast<int64_t>(values.size()) / rows});
}
}  // namespace

struct MLForceField::Impl {
  torch::jit::Module module;                                         // a TorchScript file,
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;  // or a compiled .pt2 package
  at::Device device{at::kCPU};
};

at::Tensor MLForceField::load_torchscript(const std::string& path, const std::string& dtype) {
  try {
    impl_->module = torch::jit::load(path, impl_->device);
  } catch (const c10::Error& e) {
    value_error("cannot load '", path, "' as a TorchScript force field (", e.what_without_backtrace(),
                "); model files from `spinforce train` must first be exported with "
                "`spinforce export MODEL --torchscript OUT` (or --pt2 OUT)");
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
    uncertainty_threshold_ = attribute(m, path, kUncertaintyThresholdKey).toDouble();
  }
  return attribute(m, path, kNeighborOffsetsKey).toTensor();
}

at::Tensor MLForceField::load_package(const std::string& path, const Metadata& meta, const std::string& dtype) {
  const int64_t version = integer_entry(meta, path, kFormatVersionKey);
  require(version == kPt2FormatVersion, path, " has .pt2 format_version ", version, "; this spinforce reads version ",
          kPt2FormatVersion);
  lattice_kind_ = entry(meta, path, kLatticeKindKey);
  descriptor_kind_ = entry(meta, path, kDescriptorKindKey);
  descriptor_version_ = integer_entry(meta, path, kDescriptorVersionKey);
  committee_size_ = integer_entry(meta, path, kCommitteeSizeKey);
  const std::string& threshold = entry(meta, path, kUncertaintyThresholdKey);
  uncertainty_threshold_ = threshold == "nan" ? std::nan("") : std::strtod(threshold.c_str(), nullptr);
  // A package is compiled for one dtype and one device type: it cannot be cast or moved.
  const std::string& compiled_dtype = entry(meta, path, kDtypeKey);
  require(compiled_dtype == "float32" || compiled_dtype == "float64", path, ": metadata dtype '", compiled_dtype,
          "' is not float32 or float64");
  require(dtype.empty() || dtype == compiled_dtype, path, " was compiled for ", compiled_dtype, "; it cannot run in ",
          dtype, " (export it again with `spinforce export MODEL --pt2 OUT --dtype ", dtype, "`)");
  dtype_ = compiled_dtype == "float32" ? at::kFloat : at::kDouble;
  const std::string& compiled_device = entry(meta, path, kDeviceKey);
  require(compiled_device == c10::DeviceTypeName(impl_->device.type(), /*lower_case=*/true), path,
          " was compiled for the ", compiled_device, " device; it cannot run on '", impl_->device.str(),
          "' (export it again with `spinforce export MODEL --pt2 OUT --device ",
          c10::DeviceTypeName(impl_->device.type(), true), "`)");
  try {
    impl_->package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
        path, "model", /*run_single_threaded=*/false, /*num_runners=*/1,
        impl_->device.has_index() ? impl_->device.index() : c10::DeviceIndex(-1));
  } catch (const std::exception& e) {
    value_error("cannot load the .pt2 package '", path, "' (", e.what(),
                "); a package runs only with the torch release and on the CPU instruction set it was compiled for");
  }
  return offsets_entry(meta, path);
}

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
  at::Tensor offsets;
  const Metadata meta = pt2_metadata(path);
  if (!meta.empty()) {
    format_ = "pt2";
    offsets = load_package(path, meta, dtype);
  } else {
    const std::string suffix = ".pt2";
    require(path.size() < suffix.size() || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0,
            path, " is not a spinforce .pt2 package: it holds no readable spinforce metadata (a damaged file, or "
            "not written by `spinforce export MODEL --pt2 OUT`)");
    format_ = "torchscript";
    offsets = load_torchscript(path, dtype);
  }
  require_descriptor(path, descriptor_kind_, descriptor_version_);
  require(lattice_kind_ == lattice_->kind(), "the model ", path, " was trained on the '", lattice_kind_,
          "' lattice; it cannot run on a '", lattice_->kind(), "' lattice");
  if (committee_size_ != 1)
    require(committee_size_ >= 2, path, ": committee_size must be >= 2, got ", committee_size_);

  // Neighbourhood: the model's offsets, laid on this lattice (ValueError if it is too small).
  offsets = offsets.to(at::kCPU, at::kLong).contiguous();
  neighbor_offsets_ = offsets;
  require(offsets.dim() == 2 && offsets.size(1) == lattice_->dim(), path, ": neighbor_offsets has shape ",
          offsets.sizes(), ", expected (m, ", lattice_->dim(), ")");
  std::vector<Offset> list(offsets.size(0), Offset{0, 0, 0});
  auto a = offsets.accessor<int64_t, 2>();
  for (int64_t i = 0; i < offsets.size(0); ++i)
    for (int d = 0; d < lattice_->dim(); ++d) list[i][d] = a[i][d];
  neighbors_ = lattice_->neighbor_table(list).to(impl_->device);
  if (impl_->package) {
    // The package's backward gathers over the inverse table, the sites i - d_k whose k-th
    // neighbour is i (python/spinforce/ml/pt2.py, _gathers_for_scatters).
    for (Offset& d : list)
      for (int k = 0; k < lattice_->dim(); ++k) d[k] = -d[k];
    inverse_neighbors_ = lattice_->neighbor_table(list).to(impl_->device);
  }
}

MLForceField::~MLForceField() = default;

std::string MLForceField::device() const { return impl_->device.str(); }

FieldResult MLForceField::compute(const at::Tensor& spins) {
  if (impl_->package) return compute_package(spins);
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

// The package holds forward and backward as one compiled graph: no autograd at run time. Its
// inputs: spins, neighbours, inverse neighbours; outputs: energy, fields, [uncertainty,] site energies.
FieldResult MLForceField::compute_package(const at::Tensor& spins) {
  Workspace::Scope scope(workspace_);  // the package allocates its buffers through torch: reuse them
  c10::InferenceMode inference;
  const std::vector<at::Tensor> out = impl_->package->run({spins.to(impl_->device, dtype_), neighbors_, inverse_neighbors_});
  FieldResult r;
  if (out[0].is_cpu()) {
    r.energy = out[0].item<double>();
  } else {
    r.energy_tensor = out[0];
  }
  r.fields = out[1].to(spins.device(), at::kDouble).contiguous();
  if (committee_size_ > 1) r.uncertainty = out[2].to(spins.device(), at::kDouble).contiguous();
  return r;
}

at::Tensor MLForceField::site_energies(const at::Tensor& spins) {
  require(impl_->package != nullptr, "site energies from C++ need a .pt2 package; this provider runs TorchScript");
  Workspace::Scope scope(workspace_);
  c10::InferenceMode inference;
  const std::vector<at::Tensor> out = impl_->package->run({spins.to(impl_->device, dtype_), neighbors_, inverse_neighbors_});
  return out.back().to(spins.device(), at::kDouble).contiguous();
}

}  // namespace spinforce
