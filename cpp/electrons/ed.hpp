#pragma once
// Exact diagonalisation of the s-d model: dense Hermitian eigensolver from ATen (MKL LAPACK on
// CPU, cuSOLVER on GPU), then only the on-site 2x2 blocks of the density matrix.
#include <ATen/ATen.h>

#include <map>
#include <memory>

#include "electrons/sd_model.hpp"
#include "common/workspace.hpp"
#include "providers/field_provider.hpp"

namespace spinforce {

class ExactDiagonalization : public FieldProvider {
 public:
  explicit ExactDiagonalization(std::shared_ptr<const SDModel> model);

  int64_t num_sites() const override { return model_->num_sites(); }
  std::string name() const override { return "ed"; }
  std::string title() const override { return "exact diagonalisation"; }
  // spins: validated (N,3) float64 on CPU or CUDA; the work runs on the spins' device.
  FieldResult compute(const at::Tensor& spins) override;
  const Workspace& workspace() const { return workspace_; }
  // Dense (2N, 2N) complex128 Hamiltonian for these spins, orbital index 2*i + s.
  at::Tensor hamiltonian(const at::Tensor& spins);
  const SDModel& model() const { return *model_; }

 private:
  const at::Tensor& hopping_matrix(const at::Device& device);

  std::shared_ptr<const SDModel> model_;
  std::map<std::string, at::Tensor> hopping_cache_;  // per device
  Workspace workspace_;  // the evaluations' large tensors, reused by the next evaluation
};

}  // namespace spinforce
