#pragma once
// The ML field provider: runs a force field written by `spinforce export` from C++, so the LLG
// loop needs no Python. Two formats: a TorchScript file (forward(spins (N,3), neighbors (N,m))
// -> (energy, fields), differentiated by autograd at run time) or a compiled AOTInductor .pt2
// package (forward and backward compiled into one graph, python/spinforce/ml/pt2.py). A
// committee (manifest committee_size = K >= 2) returns (mean energy, mean fields, per-site
// uncertainty) and carries an uncertainty_threshold (NaN: none).
// torch/script.h and the package loader stay inside ml_force_field.cpp; this header only needs ATen.
#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>

#include "lattice/lattice.hpp"
#include "common/workspace.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

class MLForceField : public FieldProvider {
 public:
  // path: TorchScript file or .pt2 package (told apart by content); lattice: must be of the kind the model was trained on (any size);
  // device: "cpu", "cuda", "cuda:1", ... where the network runs; dtype: "" (the model's own),
  // "float32" or "float64", the precision the network runs in (float32 halves the cost on CPU;
  // the fields are always returned in float64). Raises ValueError on a file that is not a
  // spinforce TorchScript force field, a lattice of the wrong kind, a lattice too small for the
  // model's neighbourhood, or another dtype (a .pt2 package runs only in the dtype and on the
  // device type it was compiled for).
  MLForceField(const std::string& path, std::shared_ptr<const Lattice> lattice, const std::string& device,
               const std::string& dtype = "");
  ~MLForceField() override;

  int64_t num_sites() const override { return lattice_->num_sites(); }
  std::string name() const override { return "ml"; }
  std::string title() const override { return "ML"; }
  // Energy and fields (float64, on the device of `spins`); for a committee also the (N,)
  // uncertainty.
  FieldResult compute(const at::Tensor& spins) override;
  const Workspace& workspace() const { return workspace_; }

  const std::string& lattice_kind() const { return lattice_kind_; }
  const std::string& descriptor_kind() const { return descriptor_kind_; }
  int64_t descriptor_version() const { return descriptor_version_; }
  at::ScalarType dtype() const { return dtype_; }
  const at::Tensor& neighbors() const { return neighbors_; }
  // (m, dim) int64: the offsets of the sites a site's energy reads.
  const at::Tensor& neighbor_offsets() const { return neighbor_offsets_; }
  // "torchscript" or "pt2".
  const std::string& format() const { return format_; }
  // (N,) float64 site energies whose sum is the energy (a committee: the members' mean); .pt2
  // packages only (Python computes them for TorchScript files).
  at::Tensor site_energies(const at::Tensor& spins);
  std::string device() const;
  // 1 for a single model, K for a committee of K members.
  int64_t committee_size() const { return committee_size_; }
  double uncertainty_threshold() const { return uncertainty_threshold_; }

 private:
  using Metadata = std::unordered_map<std::string, std::string>;
  // Each reads the manifest into the members below and returns the neighbour offsets.
  at::Tensor load_torchscript(const std::string& path, const std::string& dtype);
  at::Tensor load_package(const std::string& path, const Metadata& meta, const std::string& dtype);
  FieldResult compute_package(const at::Tensor& spins);

  struct Impl;  // holds the torch::jit::Module or the package loader
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<const Lattice> lattice_;
  std::string format_, lattice_kind_, descriptor_kind_;
  int64_t descriptor_version_ = 0;
  at::ScalarType dtype_ = at::kDouble;
  int64_t committee_size_ = 1;
  double uncertainty_threshold_ = std::nan("");
  at::Tensor neighbors_;  // (N, m) int64 on the model device
  at::Tensor neighbor_offsets_;
  at::Tensor inverse_neighbors_;  // .pt2 only: (N, m), the site whose k-th neighbour is i
  Workspace workspace_;  // the evaluations' large tensors, reused by the next evaluation
};

}  // namespace spinforce
