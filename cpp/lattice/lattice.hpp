#pragma once
// Periodic Bravais lattices: geometry, neighbour shells and the on-site point group.
// Site index i = x + Lx*y (+ Lx*Ly*z). Offsets are integer coordinates in the basis of the
// primitive vectors; unused dimensions are zero.
#include <ATen/ATen.h>

#include <array>
#include <string>
#include <vector>

namespace spinforce {

using Offset = std::array<int64_t, 3>;
using IntMatrix = std::array<std::array<int64_t, 3>, 3>;  // acts on offsets: n' = g n

// Most sites a lattice may have (about 1.1e12): site indices, byte counts of per-site arrays and
// neighbour tables stay far from int64 overflow.
constexpr int64_t kMaxSites = int64_t(1) << 40;
// Largest neighbour shell index k accepted by shell_offsets / shell_distance.
constexpr int kMaxShell = 10000;

// A lattice kind: its geometry, its site symmetry, and what the analysis may do on it. The one
// table of kinds is lattice_kinds(); a new kind is one entry there.
struct LatticeKind {
  std::string name;
  int dim;
  std::array<std::array<double, 3>, 3> primitive_vectors;  // rows, dim x dim used
  std::string point_group;                                 // of a site: "D4", "C6v", "Oh"
  std::vector<IntMatrix> point_group_generators;           // acting on offsets
  bool orthogonal;  // primitive vectors at right angles: minimum images coordinate by coordinate
  bool triangles;   // nearest neighbours form elementary triangles, two (up, down) per cell;
                    // otherwise a planar kind has square plaquettes
  bool bipartite;   // nearest neighbours join two sublattices (Neel states exist)
  bool planar() const { return dim == 2; }  // snapshots and scalar chiralities of cells
};

const std::vector<LatticeKind>& lattice_kinds();
// ValueError naming the known kinds when `name` is none of them.
const LatticeKind& lattice_kind(const std::string& name);

class Lattice {
 public:
  // kind: a name in lattice_kinds(): "square", "triangular" (a1=(1,0), a2=(1/2, sqrt3/2)) or
  // "cubic". ValueError when a side is < 1 or the site count exceeds kMaxSites.
  Lattice(const std::string& kind, const std::vector<int64_t>& shape);

  const std::string& kind() const { return kind_; }
  const LatticeKind& kind_info() const { return *info_; }
  int dim() const { return dim_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t num_sites() const { return num_sites_; }
  // "square lattice of shape (4, 4)", for messages.
  std::string describe() const;
  // Primitive vectors as rows (dim x dim used).
  const std::array<std::array<double, 3>, 3>& primitive_vectors() const { return a_; }

  Offset coords(int64_t site) const;
  int64_t site_index(const Offset& coords) const;  // periodic wrap
  std::array<double, 3> cartesian(const Offset& n) const;
  double length(const Offset& n) const;

  // Neighbour shells by distance, k = 1 nearest (k <= kMaxShell). Offsets of a shell are sorted by angle.
  std::vector<Offset> shell_offsets(int k) const;
  double shell_distance(int k) const;
  // All offsets with 0 < |r| <= radius (+1e-9), sorted by distance then angle: a neighbourhood.
  // ValueError, before enumerating, when the ball holds more lattice points than the lattice
  // has sites (the neighbourhood would wrap around onto itself).
  std::vector<Offset> offsets_within(double radius) const;
  // The distinct sites j != 0 that have a periodic image within `radius` (+1e-9) of site 0,
  // ascending. Any radius: beyond the largest distance on the lattice every site is returned
  // without enumerating further.
  std::vector<int64_t> sites_within(double radius) const;
  // (N, m) int64 table: site of i + offsets[a]. Raises ValueError when the periodic lattice is
  // too small for the offsets to reach distinct sites other than i itself.
  at::Tensor neighbor_table(const std::vector<Offset>& offsets) const;

  // Point group of the site (D4, C6v, Oh) as integer matrices on offsets, identity first.
  const std::string& point_group_name() const { return point_group_name_; }
  const std::vector<IntMatrix>& point_group() const { return point_group_; }
  Offset apply(const IntMatrix& g, const Offset& n) const;
  // (|G|, m): perm[g][a] = b with offsets[b] = g offsets[a]; ValueError if not closed under G.
  std::vector<std::vector<int64_t>> permutations(const std::vector<Offset>& offsets) const;

 private:
  std::vector<std::pair<double, Offset>> sorted_offsets(double radius) const;

  std::string kind_;
  const LatticeKind* info_ = nullptr;
  int dim_ = 0;
  std::vector<int64_t> shape_;
  int64_t num_sites_ = 0;
  std::array<std::array<double, 3>, 3> a_{};
  std::string point_group_name_;
  std::vector<IntMatrix> point_group_;
};

}  // namespace spinforce
