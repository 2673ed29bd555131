#include "electrons/kpm.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "common/errors.hpp"
#include "common/limits.hpp"
#include "electrons/fermi_dirac.hpp"
#include "electrons/kpm_cuda.hpp"
#include "electrons/kpm_stencil.hpp"
#include "electrons/probing.hpp"
#include "electrons/sd_terms.hpp"

namespace spinforce {

using kpm::Cx;
using kpm::Stencil;

namespace {

// The bounds below are exact; the margin keeps round-off (complex64 included) inside [-1, 1].
constexpr double kBoundsMargin = 1.01;
// Below this many vector elements per step an OpenMP team costs more than it saves.
constexpr int64_t kParallelThreshold = 8192;
// Probe columns per CPU inner loop (kpm_stencil.hpp): long enough to vectorise, short enough
// that the partial sums stay in registers (8 complex64 or 4 complex128 = 64 bytes per spin).
template <class T>
constexpr int kChunk = 64 / (2 * sizeof(T));

// Exact spectral bounds for every spin configuration: H = T - J S.sigma with ||J S_i.sigma|| = |J|
// on every site, so by Weyl's inequality spec(H) lies in [min eps(k) - |J|, max eps(k) + |J|],
// with eps(k) the hopping band on the lattice's own periodic k grid. Ferromagnetic spins reach
// both ends, so the bounds are also tight.
std::pair<double, double> spectral_bounds(const SDModel& model) {
  const Lattice& lattice = model.lattice();
  const int64_t N = lattice.num_sites();
  double lo = 0.0, hi = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const Offset q = lattice.coords(n);  // k = 2 pi q_d / L_d along each reciprocal vector
    double eps = 0.0;
    for (const auto& shell : model.hopping_shells())
      for (const Offset& o : shell.offsets) {
        double phase = 0.0;
        for (int d = 0; d < lattice.dim(); ++d)
          phase += 2.0 * kPi * static_cast<double>(q[d] * o[d]) / static_cast<double>(lattice.shape()[d]);
        eps -= shell.amplitude * std::cos(phase);
      }
    lo = n == 0 ? eps : std::min(lo, eps);
    hi = n == 0 ? eps : std::max(hi, eps);
  }
  return {lo - std::abs(model.J()), hi + std::abs(model.J())};
}

template <class T>
Cx<T>* cx(const at::Tensor& t) {
  return reinterpret_cast<Cx<T>*>(t.data_ptr());
}

template <class T>
Stencil<T> make_stencil(const at::Tensor& neighbors, const at::Tensor& hopping, const at::Tensor& onsite, int64_t R) {
  Stencil<T> st;
  st.neighbors = neighbors.data_ptr<int64_t>();
  st.hopping = hopping.data_ptr<T>();
  st.onsite = cx<T>(onsite);
  st.num_sites = neighbors.size(0);
  st.K = static_cast<int>(neighbors.size(1));
  st.R = static_cast<int>(R);
  return st;
}

// Calls visit(std::integral_constant<int, W>{}, r) for the chunks of W columns starting at r that
// cover 0..R-1: W, then halves of it down to single columns for the remainder.
template <int W, class Visit>
void for_each_chunk(int R, Visit visit, int start = 0) {
  const int end = start + (R - start) / W * W;
  for (int r = start; r < end; r += W) visit(std::integral_constant<int, W>{}, r);
  if constexpr (W > 1) for_each_chunk<W / 2>(R, visit, end);
}

[[noreturn]] void no_cuda_kernels() {
  value_error("spins are on a CUDA device but this build of spinforce has no CUDA kernels");
}

// Where the kernels run: the CPU, or CUDA device `device` with the scratch of its reductions.
struct Target {
  int device = -1;
  at::Tensor partials;  // (2 kCudaMaxBlocks,) float64 on the device
  bool cuda() const { return device >= 0; }
};

Target target_of(const at::Tensor& spins) {
  Target t;
  if (spins.is_cuda()) {
    t.device = spins.get_device();
    t.partials = at::empty({2 * kpm::kCudaMaxBlocks}, spins.options().dtype(at::kDouble));
  }
  return t;
}

// y = scale H~ x + zcoef z; dots[0] += <y, y>, dots[1] += Re <y, x> (dots in the device's memory).
template <class T>
void chebyshev_step(const Target& target, const Stencil<T>& st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale,
                    T zcoef, double* dots) {
#ifdef SPINFORCE_WITH_CUDA
  if (target.cuda())
    return kpm::cuda_chebyshev_step(st, x, z, y, scale, zcoef, dots, target.partials.data_ptr<double>(),
                                    target.device);
#else
  if (target.cuda()) no_cuda_kernels();
#endif
  const int64_t N = st.num_sites;
  const kpm::LocalTerms<T> none;
  double yy = 0.0, yx = 0.0;
#pragma omp parallel for reduction(+ : yy, yx) schedule(static) if (N * st.R >= kParallelThreshold)
  for (int64_t i = 0; i < N; ++i)
    for_each_chunk<kChunk<T>>(st.R, [&](auto chunk, int r) {
      const kpm::ChunkDots d = kpm::chebyshev_chunk<decltype(chunk)::value>(st, i, r, x, z, y, scale, zcoef, none);
      yy += d.yy;
      yx += d.yx;
    });
  dots[0] += yy;
  dots[1] += yx;
}

// One reverse-mode step at order n, in one sweep over the sites: G_i += weight alpha_{n-1} beta_n^+
// on-site; when `update`, alpha_free <- alpha_{n-2} = 2 H~ alpha_{n-1} - alpha_n and
// beta_{n+1} <- beta_{n-1} = 2 H~ beta_n - beta_{n+1} + sources.v . sources.coef, where the
// sources are alpha_{n-1}, alpha_n and alpha_{n-2} (read back at the same site).
template <class T>
void reverse_step(const Target& target, const Stencil<T>& st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur,
                  Cx<T>* alpha_free, const Cx<T>* beta_cur, Cx<T>* beta_next, double weight,
                  const kpm::LocalTerms<T>& sources, bool update, double* G) {
#ifdef SPINFORCE_WITH_CUDA
  if (target.cuda())
    return kpm::cuda_reverse_step(st, alpha_prev, alpha_cur, alpha_free, beta_cur, beta_next, weight, sources, update,
                                  G, target.device);
#else
  if (target.cuda()) no_cuda_kernels();
#endif
  const int64_t N = st.num_sites;
  const int R = st.R;
  const kpm::LocalTerms<T> none;
#pragma omp parallel for schedule(static) if (N * R >= kParallelThreshold)
  for (int64_t i = 0; i < N; ++i) {
    double g[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for_each_chunk<kChunk<T>>(R, [&](auto chunk, int r) {
      constexpr int W = decltype(chunk)::value;
      kpm::accumulate_onsite<W>(i, r, R, alpha_prev, beta_cur, g);
      if (!update) return;
      kpm::chebyshev_chunk<W>(st, i, r, alpha_prev, alpha_cur, alpha_free, T(2), T(-1), none);
      kpm::chebyshev_chunk<W>(st, i, r, beta_cur, beta_next, beta_next, T(2), T(-1), sources);
    });
    for (int k = 0; k < 8; ++k) G[8 * i + k] += weight * g[k];
  }
}

}  // namespace

KPM::KPM(std::shared_ptr<const SDModel> model, KPMSettings settings)
    : model_(std::move(model)), settings_(std::move(settings)) {
  require(model_ != nullptr, "model must be a spinforce.SDModel");
  require(settings_.moments >= 2 && settings_.moments <= 1000000,
          "moments (number of Chebyshev moments) must lie in [2, 1000000], got ", settings_.moments);
  if (settings_.probing_distance) {
    const double d = *settings_.probing_distance;
    require(std::isfinite(d) && d > 0,
            "probing_distance must be > 0 (lattice constants), or None for exact traces, got ", d);
  }
  if (settings_.dtype == "complex128") {
    complex_type_ = at::kComplexDouble;
    real_type_ = at::kDouble;
  } else if (settings_.dtype == "complex64") {
    complex_type_ = at::kComplexFloat;
    real_type_ = at::kFloat;
  } else {
    value_error("dtype must be 'complex128' or 'complex64', got '", settings_.dtype, "'");
  }
  const int64_t N = num_sites();
  // Colouring: an int32 colour, an int64 mark and a char per site.
  require_memory(13.0 * static_cast<double>(N), "the probing colours of the " + model_->lattice().describe());
  const auto [spectrum_lo, spectrum_hi] = spectral_bounds(*model_);
  if (settings_.bounds) {
    const auto [lo, hi] = *settings_.bounds;
    require(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
            "bounds must be finite (lower, upper) with lower < upper, got (", lo, ", ", hi, ")");
    // Outside [-1, 1] the Chebyshev polynomials grow exponentially with the order: the
    // expansion diverges instead of converging.
    const double slack = 1e-9 * (spectrum_hi - spectrum_lo + 1.0);
    require(lo <= spectrum_lo + slack && hi >= spectrum_hi - slack, "bounds (", lo, ", ", hi,
            ") are narrower than the spectrum of the model, [", spectrum_lo, ", ", spectrum_hi,
            "] (ferromagnetic spins reach both ends): the Chebyshev expansion diverges outside the bounds; "
            "give bounds that contain the spectrum, or bounds=None for the exact ones");
    center_ = 0.5 * (lo + hi);
    half_width_ = 0.5 * (hi - lo);
  } else {
    center_ = 0.5 * (spectrum_lo + spectrum_hi);
    half_width_ = std::max(kBoundsMargin * 0.5 * (spectrum_hi - spectrum_lo), 1e-3);
  }
  colour_ = probing_colours(model_->lattice(), settings_.probing_distance);
  num_colours_ = 1 + *std::max_element(colour_.begin(), colour_.end());
  // The probe block and about five work blocks of N x 2 x R complex numbers.
  const double complex_bytes = settings_.dtype == "complex64" ? 8.0 : 16.0;
  require_memory(6.0 * complex_bytes * 2.0 * static_cast<double>(N) * static_cast<double>(num_probes()),
                 "KPM with " + std::to_string(num_probes()) + " probe vectors on the " + model_->lattice().describe() +
                     " (reduce probing_distance)");
}

at::Tensor KPM::colours() const {
  at::Tensor c = at::empty({num_sites()}, at::kLong);
  std::copy(colour_.begin(), colour_.end(), c.data_ptr<int64_t>());
  return c;
}

const KPM::DeviceData& KPM::device_data(const at::Device& device) {
  auto it = device_cache_.find(device.str());
  if (it != device_cache_.end()) return it->second;
  DeviceData d;
  const HoppingTable table = hopping_table(*model_);
  d.neighbors = table.neighbors;
  // A kernel reads at least one amplitude even without hoppings.
  d.hopping = (table.amplitudes.numel() == 0 ? at::zeros({1}, at::kDouble) : table.amplitudes / half_width_).to(real_type_);
  d.probes = probe_vectors(colour_, num_colours_, settings_.probing_distance.has_value(), settings_.seed, complex_type_);
  d.probe_norm = at::real(d.probes.conj() * d.probes).sum().item<double>();  // mu_0, on the CPU once
  for (at::Tensor* t : {&d.neighbors, &d.hopping, &d.probes}) *t = t->to(device).contiguous();
  return device_cache_.emplace(device.str(), std::move(d)).first->second;
}

at::Tensor KPM::onsite_block(const at::Tensor& s) const {
  return onsite_blocks(s, model_->J(), center_, half_width_).to(complex_type_).contiguous();
}

KPM::Forward KPM::forward(const at::Tensor& spins, const at::Tensor& onsite) {
  // alpha_0 = R, alpha_1 = H~ R, alpha_{n+1} = 2 H~ alpha_n - alpha_{n-1} up to n + 1 = K = M/2;
  // two moments per product: mu_{2n} = 2 <alpha_n, alpha_n> - mu_0,
  // mu_{2n+1} = 2 Re <alpha_{n+1}, alpha_n> - mu_1.
  const int64_t M = settings_.moments, K = M / 2, R = num_probes();
  const DeviceData& d = device_data(spins.device());
  const Target target = target_of(spins);
  at::Tensor prev = d.probes.clone(), cur = at::zeros_like(prev);
  at::Tensor dots = at::zeros({K + 1, 2}, spins.options().dtype(at::kDouble));
  double* dp = dots.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(real_type_, "kpm_forward", [&] {
    const Stencil<scalar_t> st = make_stencil<scalar_t>(d.neighbors, d.hopping, onsite, R);
    chebyshev_step<scalar_t>(target, st, cx<scalar_t>(prev), cx<scalar_t>(cur), cx<scalar_t>(cur), 1, 0, dp + 2);
    for (int64_t n = 1; n < K; ++n) {
      poll_interrupt();
      chebyshev_step<scalar_t>(target, st, cx<scalar_t>(cur), cx<scalar_t>(prev), cx<scalar_t>(prev), 2, -1,
                               dp + 2 * (n + 1));
      std::swap(prev, cur);
    }
  });
  at::Tensor host = dots.cpu();
  auto dot = host.accessor<double, 2>();
  Forward f;
  f.moments.assign(M, 0.0);
  f.moments[0] = d.probe_norm;
  f.moments[1] = dot[1][1];
  for (int64_t n = 1; 2 * n < M; ++n) f.moments[2 * n] = 2.0 * dot[n][0] - f.moments[0];
  for (int64_t n = 1; 2 * n + 1 < M; ++n) f.moments[2 * n + 1] = 2.0 * dot[n + 1][1] - f.moments[1];
  f.alpha_prev = prev;
  f.alpha_cur = cur;
  return f;
}

at::Tensor KPM::moments(const at::Tensor& spins) {
  Workspace::Scope scope(workspace_);
  Forward f = forward(spins, onsite_block(spins));
  return at::tensor(f.moments, at::kDouble);
}

FieldResult KPM::compute(const at::Tensor& spins) {
  Workspace::Scope scope(workspace_);
  const int64_t N = num_sites(), M = settings_.moments, R = num_probes();
  const Target target = target_of(spins);
  at::Tensor onsite = onsite_block(spins);
  Forward f = forward(spins, onsite);

  const std::vector<double> jackson = jackson_kernel(M);
  const double kT = model_->kT();
  double mu;
  if (model_->fixed_mu()) {
    mu = *model_->mu();
  } else {
    const SpectralMeasure measure = spectral_measure(f.moments, jackson, center_, half_width_);
    mu = solve_mu(measure.energies.data(), measure.weights.data(), static_cast<int64_t>(measure.weights.size()),
                  model_->num_electrons(), kT);
  }
  const std::vector<double> c = grand_potential_coefficients(M, jackson, center_, half_width_, mu, kT);
  double omega = 0.0;
  for (int64_t m = 0; m < M; ++m) omega += c[m] * f.moments[m];

  // Reverse mode. With the moments written as Omega = const + sum_n d_n <alpha_n, alpha_n>
  // + sum_n e_n Re <alpha_{n+1}, alpha_n>, the adjoint vectors obey
  //   beta_n = s_n + 2 H~ beta_{n+1} - beta_{n+2},  s_n = 2 d_n alpha_n + e_n alpha_{n+1} + e_{n-1} alpha_{n-1},
  // from beta_{K+1} = beta_{K+2} = 0, and G = alpha_0 beta_1^+ + 2 sum_{n>=2} alpha_{n-1} beta_n^+
  // (on-site blocks only). alpha runs backwards by the same recursion, so memory stays O(N R).
  const int64_t K = M / 2;
  std::vector<double> dn(K + 2, 0.0), en(K + 2, 0.0);
  en[0] = c[1];
  for (int64_t n = 1; 2 * n < M; ++n) dn[n] = 2.0 * c[2 * n];
  for (int64_t n = 1; 2 * n + 1 < M; ++n) {
    en[n] = 2.0 * c[2 * n + 1];
    en[0] -= c[2 * n + 1];
  }
  const DeviceData& d = device_data(spins.device());
  at::Tensor alpha_prev = f.alpha_prev, alpha_cur = f.alpha_cur, alpha_free = at::empty_like(alpha_cur);
  at::Tensor beta_cur = 2.0 * dn[K] * alpha_cur + en[K - 1] * alpha_prev, beta_next = at::zeros_like(beta_cur);
  at::Tensor G = at::zeros({N, 8}, spins.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(real_type_, "kpm_reverse", [&] {
    const Stencil<scalar_t> st = make_stencil<scalar_t>(d.neighbors, d.hopping, onsite, R);
    for (int64_t n = K; n >= 1; --n) {
      poll_interrupt();
      const bool update = n >= 2;
      kpm::LocalTerms<scalar_t> sources;  // s_{n-1} = 2 d_{n-1} alpha_{n-1} + e_{n-1} alpha_n + e_{n-2} alpha_{n-2}
      if (update) {
        sources.v[0] = cx<scalar_t>(alpha_prev);
        sources.v[1] = cx<scalar_t>(alpha_cur);
        sources.v[2] = cx<scalar_t>(alpha_free);
        sources.coef[0] = static_cast<scalar_t>(2.0 * dn[n - 1]);
        sources.coef[1] = static_cast<scalar_t>(en[n - 1]);
        sources.coef[2] = static_cast<scalar_t>(en[n - 2]);
      }
      reverse_step<scalar_t>(target, st, cx<scalar_t>(alpha_prev), cx<scalar_t>(alpha_cur), cx<scalar_t>(alpha_free),
                             cx<scalar_t>(beta_cur), cx<scalar_t>(beta_next), n == 1 ? 1.0 : 2.0, sources, update,
                             G.data_ptr<double>());
      if (update) {  // alpha_free holds alpha_{n-2}, beta_next holds beta_{n-1}
        at::Tensor spent = alpha_cur;
        alpha_cur = alpha_prev;
        alpha_prev = alpha_free;
        alpha_free = spent;
        std::swap(beta_cur, beta_next);
      }
    }
  });

  // D = (G + G^+)/(2b) approximates dOmega/dH^T = f(H); fields H_i = J Tr[sigma D_ii].
  at::Tensor Gc = at::view_as_complex(G.view({N, 2, 2, 2}));
  at::Tensor D = (Gc + Gc.conj().transpose(1, 2)) / (2.0 * half_width_);
  at::Tensor d01 = D.select(1, 0).select(1, 1);
  at::Tensor d00 = at::real(D.select(1, 0).select(1, 0)), d11 = at::real(D.select(1, 1).select(1, 1));
  const OnsiteFields fields = fields_from_onsite_density(d01, d00, d11, model_->J());
  FieldResult result;
  result.fields = fields.fields;
  result.density = fields.density;
  result.mu = mu;
  result.energy = ensemble_energy(*model_, omega, mu);
  return result;
}

void KPM::chebyshev_steps(const at::Tensor& spins, int64_t steps) {
  require(steps >= 1, "steps must be >= 1, got ", steps);
  const int64_t R = num_probes();
  const DeviceData& d = device_data(spins.device());
  at::Tensor onsite = onsite_block(spins);
  const Target target = target_of(spins);
  at::Tensor a = d.probes.clone(), b = d.probes.clone();
  at::Tensor dot = at::zeros({2}, spins.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(real_type_, "kpm_steps", [&] {
    const Stencil<scalar_t> st = make_stencil<scalar_t>(d.neighbors, d.hopping, onsite, R);
    for (int64_t n = 0; n < steps; ++n) {
      chebyshev_step<scalar_t>(target, st, cx<scalar_t>(b), cx<scalar_t>(a), cx<scalar_t>(a), 2, -1,
                               dot.data_ptr<double>());
      std::swap(a, b);
    }
  });
  dot.sum().item<double>();  // waits for a CUDA device
}

}  // namespace spinforce
