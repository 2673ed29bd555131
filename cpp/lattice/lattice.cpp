#include "lattice/lattice.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "common/errors.hpp"
#include "common/limits.hpp"

namespace spinforce {
namespace {

constexpr double kDistanceTol = 1e-9;

IntMatrix identity_matrix() {
  IntMatrix m{};
  for (int d = 0; d < 3; ++d) m[d][d] = 1;
  return m;
}

IntMatrix multiply(const IntMatrix& a, const IntMatrix& b) {
  IntMatrix c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i][j] += a[i][k] * b[k][j];
  return c;
}

// Closure of the generators under multiplication, identity first, in discovery order.
std::vector<IntMatrix> generate_group(const std::vector<IntMatrix>& generators) {
  std::vector<IntMatrix> group{identity_matrix()};
  for (size_t head = 0; head < group.size(); ++head) {
    for (const auto& g : generators) {
      IntMatrix h = multiply(g, group[head]);
      if (std::find(group.begin(), group.end(), h) == group.end()) group.push_back(h);
    }
  }
  return group;
}

IntMatrix matrix2(int64_t a, int64_t b, int64_t c, int64_t d) {
  IntMatrix m{};
  m[0] = {a, b, 0};
  m[1] = {c, d, 0};
  m[2] = {0, 0, 1};
  return m;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t d = 0; d < shape.size(); ++d) os << (d ? ", " : "") << shape[d];
  os << ")";
  return os.str();
}

}  // namespace

const std::vector<LatticeKind>& lattice_kinds() {
  static const std::vector<LatticeKind> kinds = [] {
    const double s3 = std::sqrt(3.0);
    IntMatrix c4z{}, c3{}, inv{};
    c4z[0] = {0, -1, 0};
    c4z[1] = {1, 0, 0};
    c4z[2] = {0, 0, 1};
    c3[0] = {0, 0, 1};
    c3[1] = {1, 0, 0};
    c3[2] = {0, 1, 0};
    inv[0] = {-1, 0, 0};
    inv[1] = {0, -1, 0};
    inv[2] = {0, 0, -1};
    std::vector<LatticeKind> k;
    // 90 degree rotation and the mirror y -> -y.
    k.push_back({"square", 2, {{{1, 0, 0}, {0, 1, 0}, {0, 0, 0}}}, "D4",
                 {matrix2(0, -1, 1, 0), matrix2(1, 0, 0, -1)}, true, false, true});
    // 60 degree rotation: a1 -> a2, a2 -> a2 - a1; mirror y -> -y: a1 -> a1, a2 -> a1 - a2.
    k.push_back({"triangular", 2, {{{1, 0, 0}, {0.5, s3 / 2, 0}, {0, 0, 0}}}, "C6v",
                 {matrix2(0, -1, 1, 1), matrix2(1, 1, 0, -1)}, false, true, false});
    k.push_back({"cubic", 3, {{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}}, "Oh", {c4z, c3, inv}, true, false, true});
    return k;
  }();
  return kinds;
}

const LatticeKind& lattice_kind(const std::string& name) {
  std::string known;
  for (const LatticeKind& k : lattice_kinds()) {
    if (k.name == name) return k;
    known += (known.empty() ? "'" : ", '") + k.name + "'";
  }
  value_error("lattice kind must be one of ", known, ", got '", name, "'");
}

Lattice::Lattice(const std::string& kind, const std::vector<int64_t>& shape)
    : kind_(kind), info_(&lattice_kind(kind)) {
  dim_ = info_->dim;
  a_ = info_->primitive_vectors;
  point_group_name_ = info_->point_group;
  point_group_ = generate_group(info_->point_group_generators);
  require(static_cast<int>(shape.size()) == dim_, "shape of a ", kind, " lattice must have ", dim_,
          " entries, got ", shape.size());
  shape_ = shape;
  double sites = 1.0;  // in floating point: the integer product may overflow
  for (int64_t L : shape) {
    require(L >= 1, "shape entries must be >= 1, got ", shape_string(shape));
    sites *= static_cast<double>(L);
  }
  require(sites <= static_cast<double>(kMaxSites), "lattice shape ", shape_string(shape), " has ", sites,
          " sites, more than the ", kMaxSites, " (2^40) a lattice may have");
  num_sites_ = 1;
  for (int64_t L : shape) num_sites_ *= L;
}

std::string Lattice::describe() const { return kind_ + " lattice of shape " + shape_string(shape_); }

Offset Lattice::coords(int64_t site) const {
  require(site >= 0 && site < num_sites_, "site must lie in [0, ", num_sites_, "), got ", site);
  Offset c{0, 0, 0};
  for (int d = 0; d < dim_; ++d) {
    c[d] = site % shape_[d];
    site /= shape_[d];
  }
  return c;
}

int64_t Lattice::site_index(const Offset& c) const {
  int64_t index = 0, stride = 1;
  for (int d = 0; d < dim_; ++d) {
    const int64_t L = shape_[d];
    index += (((c[d] % L) + L) % L) * stride;
    stride *= L;
  }
  return index;
}

std::array<double, 3> Lattice::cartesian(const Offset& n) const {
  std::array<double, 3> r{0, 0, 0};
  for (int d = 0; d < dim_; ++d)
    for (int k = 0; k < 3; ++k) r[k] += static_cast<double>(n[d]) * a_[d][k];
  return r;
}

double Lattice::length(const Offset& n) const {
  const auto r = cartesian(n);
  return std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
}

std::vector<std::pair<double, Offset>> Lattice::sorted_offsets(double radius) const {
  // The box |n_d| <= K contains the ball of radius K*sqrt(3)/2 for all three lattices.
  const int64_t K = static_cast<int64_t>(std::ceil(radius / (std::sqrt(3.0) / 2.0))) + 1;
  std::vector<std::pair<double, Offset>> out;
  const int64_t kz = dim_ == 3 ? K : 0;
  for (int64_t z = -kz; z <= kz; ++z)
    for (int64_t y = -K; y <= K; ++y) {
      poll_interrupt();
      for (int64_t x = -K; x <= K; ++x) {
        Offset n{x, y, z};
        const double d = length(n);
        if (d > kDistanceTol && d <= radius + kDistanceTol) out.emplace_back(d, n);
      }
    }
  auto key = [this](const std::pair<double, Offset>& p) {
    const auto r = cartesian(p.second);
    double angle = std::atan2(r[1], r[0]);
    if (angle < -kDistanceTol) angle += 2 * M_PI;
    return std::make_tuple(std::round(p.first / kDistanceTol), r[2], std::round(angle * 1e9));
  };
  std::sort(out.begin(), out.end(), [&](const auto& p, const auto& q) { return key(p) < key(q); });
  return out;
}

double Lattice::shell_distance(int k) const {
  require(k >= 1 && k <= kMaxShell, "neighbour shell index k must lie in [1, ", kMaxShell, "], got ", k);
  for (double radius = k + 1.0;; radius *= 2) {
    auto offs = sorted_offsets(radius);
    std::vector<double> distances;
    for (const auto& p : offs)
      if (distances.empty() || p.first > distances.back() + kDistanceTol) distances.push_back(p.first);
    if (static_cast<int>(distances.size()) >= k) return distances[k - 1];
  }
}

std::vector<Offset> Lattice::shell_offsets(int k) const {
  const double d = shell_distance(k);
  std::vector<Offset> out;
  for (const auto& p : sorted_offsets(d))
    if (std::abs(p.first - d) <= kDistanceTol) out.push_back(p.second);
  return out;
}

std::vector<Offset> Lattice::offsets_within(double radius) const {
  require(radius > 0 && std::isfinite(radius), "cutoff radius must be > 0, got ", radius);
  // The unit cells of the lattice points within the radius cover the ball of radius
  // (radius - cell diameter), so there are at least that ball's volume / the cell volume of
  // them; more than N - 1 cannot be distinct sites other than the centre.
  const auto& a = a_;
  const double volume = dim_ == 2 ? std::abs(a[0][0] * a[1][1] - a[0][1] * a[1][0])
                     : std::abs(a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                                a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                                a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]));
  double diameter = 0.0;
  for (int64_t e0 = -1; e0 <= 1; ++e0)
    for (int64_t e1 = -1; e1 <= 1; ++e1)
      for (int64_t e2 = dim_ == 3 ? -1 : 0; e2 <= (dim_ == 3 ? 1 : 0); ++e2)
        diameter = std::max(diameter, length({e0, e1, e2}));
  const double inner = radius - diameter;
  if (inner > 0) {
    const double ball = dim_ == 2 ? M_PI * inner * inner : 4.0 / 3.0 * M_PI * inner * inner * inner;
    const double others = ball / volume - 1.0;
    require(others <= static_cast<double>(num_sites_ - 1), "cutoff radius ", radius, " is too large for the ",
            describe(), ": a neighbourhood of that radius holds at least ", std::floor(others),
            " other sites, but the periodic lattice has only ", num_sites_,
            " sites in all; every side must exceed twice the radius");
  }
  std::vector<Offset> out;
  for (const auto& p : sorted_offsets(radius)) out.push_back(p.second);
  return out;
}

std::vector<int64_t> Lattice::sites_within(double radius) const {
  require(radius > 0 && !std::isnan(radius), "radius must be > 0, got ", radius);
  // Every site has an image with |n_d| <= L_d / 2 along each primitive vector (all of length 1).
  double covering = 0.0;
  for (int64_t L : shape_) covering += 0.5 * static_cast<double>(L);
  std::vector<int64_t> out;
  if (radius >= covering) {
    for (int64_t j = 1; j < num_sites_; ++j) out.push_back(j);
    return out;
  }
  std::vector<char> seen(num_sites_, 0);
  // On orthogonal axes (square, cubic) a site has an image within the radius exactly when its
  // minimal image, |n_d| <= L_d / 2, is; the triangular axes need the whole box.
  const bool orthogonal = info_->orthogonal;
  const int64_t K = static_cast<int64_t>(std::ceil(radius / (std::sqrt(3.0) / 2.0))) + 1;
  int64_t box[3] = {0, 0, 0};
  for (int d = 0; d < dim_; ++d) box[d] = orthogonal ? std::min(K, shape_[d] / 2) : K;
  for (int64_t z = -box[2]; z <= box[2]; ++z)
    for (int64_t y = -box[1]; y <= box[1]; ++y) {
      poll_interrupt();
      for (int64_t x = -box[0]; x <= box[0]; ++x) {
        const Offset n{x, y, z};
        if (length(n) <= radius + kDistanceTol) seen[site_index(n)] = 1;
      }
    }
  for (int64_t j = 1; j < num_sites_; ++j)
    if (seen[j]) out.push_back(j);
  return out;
}

at::Tensor Lattice::neighbor_table(const std::vector<Offset>& offsets) const {
  const int64_t m = static_cast<int64_t>(offsets.size());
  // Translation invariance: distinctness at site 0 holds everywhere.
  std::set<int64_t> reached{0};
  double max_length = 0;
  for (const auto& n : offsets) max_length = std::max(max_length, length(n));
  for (const auto& n : offsets) {
    if (!reached.insert(site_index(n)).second) {
      value_error("lattice shape ", shape_string(shape_), " is too small: neighbour offsets up to distance ",
                  max_length, " wrap around onto the same site; every side must exceed twice that distance");
    }
  }
  require_memory(8.0 * static_cast<double>(num_sites_) * static_cast<double>(m),
                 "the neighbour table (" + std::to_string(m) + " neighbours per site) of the " + describe());
  at::Tensor table = at::empty({num_sites_, m}, at::kLong);
  auto t = table.accessor<int64_t, 2>();
  for (int64_t i = 0; i < num_sites_; ++i) {
    if (i % 4096 == 0) poll_interrupt();
    const Offset c = coords(i);
    for (int64_t a = 0; a < m; ++a) {
      Offset n{c[0] + offsets[a][0], c[1] + offsets[a][1], c[2] + offsets[a][2]};
      t[i][a] = site_index(n);
    }
  }
  return table;
}

Offset Lattice::apply(const IntMatrix& g, const Offset& n) const {
  Offset out{0, 0, 0};
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 3; ++k) out[i] += g[i][k] * n[k];
  return out;
}

std::vector<std::vector<int64_t>> Lattice::permutations(const std::vector<Offset>& offsets) const {
  std::vector<std::vector<int64_t>> perms;
  for (const auto& g : point_group_) {
    std::vector<int64_t> p(offsets.size());
    for (size_t a = 0; a < offsets.size(); ++a) {
      const Offset image = apply(g, offsets[a]);
      auto it = std::find(offsets.begin(), offsets.end(), image);
      require(it != offsets.end(), "offsets are not closed under the point group ", point_group_name_,
              ": the image of an offset is missing (use a full set of neighbour shells)");
      p[a] = it - offsets.begin();
    }
    perms.push_back(std::move(p));
  }
  return perms;
}

}  // namespace spinforce
