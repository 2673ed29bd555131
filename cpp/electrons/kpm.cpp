#include "electrons/kpm.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <type_traits>

#include "common/errors.hpp"
#include "common/limits.hpp"
#include "electrons/kpm_cuda.hpp"
#include "electrons/kpm_stencil.hpp"
#include "electrons/occupation.hpp"

namespace spinforce {

using kpm::Cx;
using kpm::Stencil;

namespace {

constexpr double kPi = 3.14159265358979323846;
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

// Reproducible per-(seed, orbital) random numbers in [0, 1): splitmix64.
double uniform_hash(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + index + 0x632BE59BD9B4E019ULL;
  for (int round = 0; round < 2; ++round) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
  }
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

// Greedy colouring in site order: sites of one colour lie farther apart than `distance`
// (minimum image on the periodic lattice). No distance: every site its own colour.
std::vector<int32_t> probing_colours(const Lattice& lattice, std::optional<double> distance) {
  const int64_t N = lattice.num_sites();
  std::vector<int32_t> colour(N);
  if (!distance) {
    for (int64_t i = 0; i < N; ++i) colour[i] = static_cast<int32_t>(i);
    return colour;
  }
  // Wrapped displacements within the distance, found once at site 0 (translation invariance);
  // at most N - 1 of them however large the distance.
  std::vector<Offset> displacements;
  for (int64_t j : lattice.sites_within(*distance)) displacements.push_back(lattice.coords(j));
  std::vector<int64_t> used_by(N + 1, -1);  // used_by[c] == i: colour c taken near site i
  for (int64_t i = 0; i < N; ++i) {
    poll_interrupt();
    const Offset c = lattice.coords(i);
    for (const Offset& o : displacements) {
      const int64_t j = lattice.site_index({c[0] + o[0], c[1] + o[1], c[2] + o[2]});
      if (j < i) used_by[colour[j]] = i;
    }
    int32_t k = 0;
    while (used_by[k] == i) ++k;
    colour[i] = k;
  }
  return colour;
}

// Calls visit(m, T_m(x)) for m = 0..M-1 by the three-term recurrence (stable for |x| <= 1).
template <class Visit>
void for_each_chebyshev(double x, int64_t M, Visit visit) {
  double t0 = 1.0, t1 = x;
  visit(0, t0);
  if (M > 1) visit(1, t1);
  for (int64_t m = 2; m < M; ++m) {
    const double t2 = 2.0 * x * t1 - t0;
    visit(m, t2);
    t0 = t1;
    t1 = t2;
  }
}

double chebyshev_node(int64_t k, int64_t Mq) { return std::cos(kPi * (k + 0.5) / Mq); }

// Sums over the Chebyshev nodes x~_k = cos(pi (k + 1/2)/Mq):
// analysis out_m = sum_k f_k T_m(x~_k); synthesis out_k = sum_m f_m T_m(x~_k).
std::vector<double> chebyshev_analysis(const std::vector<double>& f, int64_t M) {
  const int64_t Mq = static_cast<int64_t>(f.size());
  std::vector<double> out(M, 0.0);
  for (int64_t k = 0; k < Mq; ++k) {
    poll_interrupt();  // O(Mq M): minutes for a million moments
    for_each_chebyshev(chebyshev_node(k, Mq), M, [&](int64_t m, double t) { out[m] += f[k] * t; });
  }
  return out;
}

std::vector<double> chebyshev_synthesis(const std::vector<double>& f, int64_t Mq) {
  const int64_t M = static_cast<int64_t>(f.size());
  std::vector<double> out(Mq, 0.0);
  for (int64_t k = 0; k < Mq; ++k) {
    poll_interrupt();
    for_each_chebyshev(chebyshev_node(k, Mq), M, [&](int64_t m, double t) { out[k] += f[m] * t; });
  }
  return out;
}

int64_t quadrature_points(int64_t M) { return std::max<int64_t>(4 * M, 1024); }

// The spectral measure of the moments on the Chebyshev nodes: Tr h(H) ~ sum_k w_k h(x_k) for
// any smooth h, with the Jackson kernel applied (Weisse et al. 2006, Sec. II.C).
std::vector<double> node_weights(const std::vector<double>& moments, const std::vector<double>& jackson) {
  const int64_t M = static_cast<int64_t>(moments.size()), Mq = quadrature_points(M);
  std::vector<double> damped(M);
  for (int64_t m = 0; m < M; ++m) damped[m] = (m == 0 ? 1.0 : 2.0) * jackson[m] * moments[m] / Mq;
  return chebyshev_synthesis(damped, Mq);
}

// Chemical potential with sum_k w_k f(x_k - mu) = Ne, by bisection (the count is monotone).
double solve_mu(const std::vector<double>& w, double center, double half_width, double kT, double Ne) {
  const int64_t Mq = static_cast<int64_t>(w.size());
  auto count = [&](double mu) {
    double n = 0.0;
    for (int64_t k = 0; k < Mq; ++k) n += w[k] * fermi(center + half_width * chebyshev_node(k, Mq), mu, kT);
    return n;
  };
  double lo = center - half_width - 40.0 * kT - 1.0, hi = center + half_width + 40.0 * kT + 1.0;
  for (int it = 0; it < 100 && hi - lo > 1e-14 * (1.0 + std::abs(lo) + std::abs(hi)); ++it) {
    poll_interrupt();
    const double mid = 0.5 * (lo + hi);
    (count(mid) < Ne ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// Jackson-damped Chebyshev coefficients c_m of the grand-potential density at mu.
std::vector<double> grand_potential_coefficients(int64_t M, const std::vector<double>& jackson, double center,
                                                 double half_width, double mu, double kT) {
  const int64_t Mq = quadrature_points(M);
  std::vector<double> g(Mq);
  for (int64_t k = 0; k < Mq; ++k)
    g[k] = grand_potential_density(center + half_width * chebyshev_node(k, Mq), mu, kT);
  std::vector<double> c = chebyshev_analysis(g, M);
  for (int64_t m = 0; m < M; ++m) c[m] *= (m == 0 ? 1.0 : 2.0) * jackson[m] / Mq;
  return c;
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

// y = scale H~ x + zcoef z; dots[0] += <y, y>, dots[1] += Re <y, x> (dots in the device's memory).
template <class T>
void chebyshev_step(bool cuda, const Stencil<T>& st, const Cx<T>* x, const Cx<T>* z, Cx<T>* y, T scale, T zcoef,
                    double* dots) {
#ifdef SPINFORCE_WITH_CUDA
  if (cuda) return kpm::cuda_chebyshev_step(st, x, z, y, scale, zcoef, dots);
#else
  if (cuda) no_cuda_kernels();
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
void reverse_step(bool cuda, const Stencil<T>& st, const Cx<T>* alpha_prev, const Cx<T>* alpha_cur, Cx<T>* alpha_free,
                  const Cx<T>* beta_cur, Cx<T>* beta_next, double weight, const kpm::LocalTerms<T>& sources,
                  bool update, double* G) {
#ifdef SPINFORCE_WITH_CUDA
  if (cuda)
    return kpm::cuda_reverse_step(st, alpha_prev, alpha_cur, alpha_free, beta_cur, beta_next, weight, sources, update, G);
#else
  if (cuda) no_cuda_kernels();
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

std::vector<double> jackson_kernel(int64_t M) {
  std::vector<double> g(M);
  const double q = kPi / static_cast<double>(M + 1);
  for (int64_t m = 0; m < M; ++m)
    g[m] = ((M + 1 - m) * std::cos(q * m) + std::sin(q * m) * std::cos(q) / std::sin(q)) / static_cast<double>(M + 1);
  return g;
}

at::Tensor kpm_density_of_states(const at::Tensor& moments_in, double center, double half_width,
                                 const at::Tensor& energies_in) {
  require(moments_in.dim() == 1 && moments_in.numel() >= 2, "moments must be a 1-d array of at least 2 moments");
  require(std::isfinite(half_width) && half_width > 0, "half_width must be > 0, got ", half_width);
  at::Tensor moments = moments_in.to(at::kCPU, at::kDouble).contiguous();
  at::Tensor energies = energies_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t M = moments.numel();
  const std::vector<double> g = jackson_kernel(M);
  const double* mu = moments.data_ptr<double>();
  at::Tensor out = at::zeros_like(energies);
  const double* e = energies.data_ptr<double>();
  double* rho = out.data_ptr<double>();
  for (int64_t n = 0; n < energies.numel(); ++n) {
    const double x = (e[n] - center) / half_width;
    if (!(std::abs(x) < 1.0)) continue;
    double sum = 0.0;
    for_each_chebyshev(x, M, [&](int64_t m, double t) { sum += (m == 0 ? 1.0 : 2.0) * g[m] * mu[m] * t; });
    rho[n] = sum / (kPi * half_width * std::sqrt(1.0 - x * x));
  }
  return out;
}

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
  const int64_t N = num_sites(), R = num_probes();
  DeviceData d;
  std::vector<at::Tensor> tables;
  std::vector<double> amplitudes;
  for (const auto& shell : model_->hopping_shells()) {
    tables.push_back(shell.neighbors);
    for (size_t a = 0; a < shell.offsets.size(); ++a) amplitudes.push_back(-shell.amplitude / half_width_);
  }
  d.neighbors = tables.empty() ? at::empty({N, 0}, at::kLong) : at::cat(tables, 1).contiguous();
  d.hopping = at::tensor(amplitudes.empty() ? std::vector<double>{0.0} : amplitudes, at::kDouble).to(real_type_);
  // Probe vector 2c + s: random phases on the sites of colour c, spin s (exact traces: ones).
  at::Tensor theta = at::zeros({N, 2}, at::kDouble);
  if (settings_.probing_distance) {
    double* th = theta.data_ptr<double>();
    for (int64_t k = 0; k < 2 * N; ++k) th[k] = 2.0 * kPi * uniform_hash(settings_.seed, static_cast<uint64_t>(k));
  }
  at::Tensor phase = at::polar(at::ones_like(theta), theta).to(complex_type_);
  at::Tensor rows = at::arange(N, at::kLong), cols = 2 * colours();
  d.probes = at::zeros({N, 2, R}, complex_type_);
  for (int s = 0; s < 2; ++s) d.probes.select(1, s).index_put_({rows, cols + s}, phase.select(1, s));
  for (at::Tensor* t : {&d.neighbors, &d.hopping, &d.probes}) *t = t->to(device).contiguous();
  return device_cache_.emplace(device.str(), std::move(d)).first->second;
}

at::Tensor KPM::onsite_block(const at::Tensor& s) const {
  // (h - a)/b with h = -J [[Sz, Sx - i Sy], [Sx + i Sy, -Sz]], rows h00 h01 h10 h11.
  const double J = model_->J(), a = center_, b = half_width_;
  at::Tensor sx = s.select(1, 0), sy = s.select(1, 1), sz = s.select(1, 2);
  at::Tensor zero = at::zeros_like(sx);
  at::Tensor block = at::stack({at::complex((-J * sz - a) / b, zero), at::complex(-J * sx / b, J * sy / b),
                                at::complex(-J * sx / b, -J * sy / b), at::complex((J * sz - a) / b, zero)},
                               1);
  return block.to(complex_type_).contiguous();
}

KPM::Forward KPM::forward(const at::Tensor& spins, const at::Tensor& onsite) {
  // alpha_0 = R, alpha_1 = H~ R, alpha_{n+1} = 2 H~ alpha_n - alpha_{n-1} up to n + 1 = K = M/2;
  // two moments per product: mu_{2n} = 2 <alpha_n, alpha_n> - mu_0,
  // mu_{2n+1} = 2 Re <alpha_{n+1}, alpha_n> - mu_1.
  const int64_t M = settings_.moments, K = M / 2, R = num_probes();
  const DeviceData& d = device_data(spins.device());
  const bool cuda = spins.is_cuda();
  at::Tensor prev = d.probes.clone(), cur = at::zeros_like(prev);
  at::Tensor dots = at::zeros({K + 1, 2}, spins.options().dtype(at::kDouble));
  double* dp = dots.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(real_type_, "kpm_forward", [&] {
    const Stencil<scalar_t> st = make_stencil<scalar_t>(d.neighbors, d.hopping, onsite, R);
    chebyshev_step<scalar_t>(cuda, st, cx<scalar_t>(prev), cx<scalar_t>(cur), cx<scalar_t>(cur), 1, 0, dp + 2);
    for (int64_t n = 1; n < K; ++n) {
      poll_interrupt();
      chebyshev_step<scalar_t>(cuda, st, cx<scalar_t>(cur), cx<scalar_t>(prev), cx<scalar_t>(prev), 2, -1,
                               dp + 2 * (n + 1));
      std::swap(prev, cur);
    }
  });
  at::Tensor host = dots.cpu();
  auto dot = host.accessor<double, 2>();
  Forward f;
  f.moments.assign(M, 0.0);
  f.moments[0] = at::real(d.probes.conj() * d.probes).sum().item<double>();
  f.moments[1] = dot[1][1];
  for (int64_t n = 1; 2 * n < M; ++n) f.moments[2 * n] = 2.0 * dot[n][0] - f.moments[0];
  for (int64_t n = 1; 2 * n + 1 < M; ++n) f.moments[2 * n + 1] = 2.0 * dot[n + 1][1] - f.moments[1];
  f.alpha_prev = prev;
  f.alpha_cur = cur;
  return f;
}

at::Tensor KPM::moments(const at::Tensor& spins) {
  Forward f = forward(spins, onsite_block(spins));
  return at::tensor(f.moments, at::kDouble);
}

FieldResult KPM::compute(const at::Tensor& spins) {
  const int64_t N = num_sites(), M = settings_.moments, R = num_probes();
  const bool cuda = spins.is_cuda();
  at::Tensor onsite = onsite_block(spins);
  Forward f = forward(spins, onsite);

  const std::vector<double> jackson = jackson_kernel(M);
  const double kT = model_->kT();
  double mu;
  if (model_->fixed_mu()) {
    mu = *model_->mu();
  } else {
    mu = solve_mu(node_weights(f.moments, jackson), center_, half_width_, kT, model_->num_electrons());
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
      reverse_step<scalar_t>(cuda, st, cx<scalar_t>(alpha_prev), cx<scalar_t>(alpha_cur), cx<scalar_t>(alpha_free),
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
  const double J = model_->J();
  FieldResult result;
  result.fields = at::stack({2.0 * J * at::real(d01), -2.0 * J * at::imag(d01), J * (d00 - d11)}, 1).contiguous();
  result.density = (d00 + d11).contiguous();
  result.mu = mu;
  result.energy = model_->fixed_mu() ? omega : omega + mu * model_->num_electrons();
  return result;
}

double KPM::chebyshev_step_seconds(const at::Tensor& spins, int64_t steps) {
  require(steps >= 1, "steps must be >= 1, got ", steps);
  const int64_t R = num_probes();
  const DeviceData& d = device_data(spins.device());
  at::Tensor onsite = onsite_block(spins);
  const bool cuda = spins.is_cuda();
  at::Tensor a = d.probes.clone(), b = d.probes.clone();
  at::Tensor dot = at::zeros({2}, spins.options().dtype(at::kDouble));
  double seconds = 0.0;
  AT_DISPATCH_FLOATING_TYPES(real_type_, "kpm_step_timing", [&] {
    const Stencil<scalar_t> st = make_stencil<scalar_t>(d.neighbors, d.hopping, onsite, R);
    auto step = [&] {
      chebyshev_step<scalar_t>(cuda, st, cx<scalar_t>(b), cx<scalar_t>(a), cx<scalar_t>(a), 2, -1,
                               dot.data_ptr<double>());
      std::swap(a, b);
    };
    step();
    dot.sum().item<double>();  // synchronises a CUDA device
    const auto start = std::chrono::steady_clock::now();
    for (int64_t n = 0; n < steps; ++n) step();
    dot.sum().item<double>();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
  });
  return seconds;
}

}  // namespace spinforce
