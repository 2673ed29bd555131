#include "electrons/ed.hpp"

#include "common/errors.hpp"
#include "common/limits.hpp"
#include "electrons/occupation.hpp"
#include "electrons/sd_terms.hpp"

namespace spinforce {

ExactDiagonalization::ExactDiagonalization(std::shared_ptr<const SDModel> model) : model_(std::move(model)) {
  require(model_ != nullptr, "model must be a spinforce.SDModel");
  // The hopping matrix, the Hamiltonian, its eigenvectors and LAPACK's workspace: four dense
  // 2N x 2N complex128 matrices.
  const double dim = 2.0 * static_cast<double>(model_->num_sites());
  require_memory(4.0 * 16.0 * dim * dim,
                 "exact diagonalisation of the " + model_->lattice().describe() + " (dense 2N x 2N matrices)");
}

const at::Tensor& ExactDiagonalization::hopping_matrix(const at::Device& device) {
  auto it = hopping_cache_.find(device.str());
  if (it != hopping_cache_.end()) return it->second;
  const int64_t N = model_->num_sites();
  const HoppingTable table = hopping_table(*model_);
  at::Tensor h = at::zeros({2 * N, 2 * N}, at::kComplexDouble);
  auto acc = h.accessor<c10::complex<double>, 2>();
  auto nb = table.neighbors.accessor<int64_t, 2>();
  const double* amplitude = table.amplitudes.data_ptr<double>();
  for (int64_t i = 0; i < N; ++i)
    for (int64_t a = 0; a < nb.size(1); ++a)
      for (int s = 0; s < 2; ++s) acc[2 * i + s][2 * nb[i][a] + s] += amplitude[a];
  return hopping_cache_.emplace(device.str(), h.to(device)).first->second;
}

at::Tensor ExactDiagonalization::hamiltonian(const at::Tensor& s) {
  const int64_t N = model_->num_sites();
  at::Tensor h = hopping_matrix(s.device()).clone();
  at::Tensor block = onsite_blocks(s, model_->J());
  at::Tensor diag = h.view({N, 2, N, 2}).diagonal(0, 0, 2);  // (2, 2, N)
  diag.add_(block.permute({1, 2, 0}));
  return h;
}

FieldResult ExactDiagonalization::compute(const at::Tensor& spins) {
  Workspace::Scope scope(workspace_);
  const int64_t N = model_->num_sites();
  at::Tensor h = hamiltonian(spins);
  auto [levels, vectors] = at::linalg_eigh(h, "L");
  Occupation occ = occupy(levels, *model_);

  // Only occupied levels contribute; levels are ascending and f is non-increasing.
  at::Tensor occupied = (occ.f > 1e-15).sum();
  const int64_t K = occupied.item<int64_t>();
  at::Tensor f = occ.f.narrow(0, 0, K).to(vectors.device());
  // Rows of vectors.mT() are eigenvectors: (K, N, 2) without copying the full matrix.
  at::Tensor u = vectors.mT().narrow(0, 0, K).reshape({K, N, 2});
  at::Tensor up = u.select(2, 0), dn = u.select(2, 1);
  at::Tensor fw = f.unsqueeze(1);
  at::Tensor r = (up * dn.conj() * fw).sum(0);  // sum_m f_m u_m(i up) conj(u_m(i dn))
  at::Tensor n_up = (at::real(up * up.conj()) * fw).sum(0);
  at::Tensor n_dn = (at::real(dn * dn.conj()) * fw).sum(0);

  const OnsiteFields onsite = fields_from_onsite_density(r, n_up, n_dn, model_->J());
  FieldResult result;
  result.energy = occ.energy;
  result.mu = occ.mu;
  result.fields = onsite.fields;
  result.density = onsite.density;
  result.eigenvalues = levels;
  return result;
}

}  // namespace spinforce
