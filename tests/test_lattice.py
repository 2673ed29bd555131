"""Lattice geometry, neighbour shells, point groups and spin configurations."""
import numpy as np
import pytest
import torch

import spinforce as sf

SHELLS = {  # (kind, shell) -> (count, distance)
    ("square", 1): (4, 1.0), ("square", 2): (4, np.sqrt(2)), ("square", 3): (4, 2.0),
    ("triangular", 1): (6, 1.0), ("triangular", 2): (6, np.sqrt(3)), ("triangular", 3): (6, 2.0),
    ("cubic", 1): (6, 1.0), ("cubic", 2): (12, np.sqrt(2)), ("cubic", 3): (8, np.sqrt(3)),
}


@pytest.mark.parametrize("kind,k", list(SHELLS))
def test_shells_count_and_distance(kind, k):
    lat = sf.Lattice(kind, 6)
    count, dist = SHELLS[(kind, k)]
    offs = lat.shell_offsets(k).numpy()
    assert len(offs) == count
    cart = offs @ lat.primitive_vectors.numpy()
    np.testing.assert_allclose(np.linalg.norm(cart, axis=1), dist, atol=1e-12)
    assert lat.shell_distance(k) == pytest.approx(dist, abs=1e-12)


@pytest.mark.parametrize("kind,order,name", [("square", 8, "D4"), ("triangular", 12, "C6v"), ("cubic", 48, "Oh")])
def test_point_group_is_a_group_of_isometries(kind, order, name):
    lat = sf.Lattice(kind, 6)
    G = lat.point_group_matrices.numpy()
    assert lat.point_group_name == name and len(G) == order
    np.testing.assert_array_equal(G[0], np.eye(lat.dim, dtype=int))
    keys = {g.tobytes() for g in G}
    assert all((a @ b).tobytes() in keys for a in G for b in G)  # closure
    C = lat.point_group_cartesian
    for c in C:  # orthogonal in Cartesian space
        np.testing.assert_allclose(c @ c.T, np.eye(lat.dim), atol=1e-12)
    dets = np.round(np.linalg.det(C)).astype(int)
    assert sorted(set(dets)) == [-1, 1] and (dets == 1).sum() == order // 2


def test_permutations_preserve_the_neighbourhood():
    lat = sf.Lattice("triangular", 8)
    offs = lat.offsets_within(2.0).numpy()
    perms = lat.permutations(offs)
    assert perms.shape == (12, len(offs))
    for g, p in zip(lat.point_group_matrices.numpy(), perms):
        np.testing.assert_array_equal(offs[p], offs @ g.T)
    with pytest.raises(ValueError, match="not closed"):
        lat.permutations(offs[:3])


def test_site_index_convention_and_neighbours():
    lat = sf.Lattice("square", (5, 4))
    assert lat.num_sites == 20 and lat.shape == (5, 4)
    assert lat.coords_of(7) == (2, 1)  # 7 = 2 + 5*1
    np.testing.assert_array_equal(lat.coordinates[7], [2, 1])
    nb = lat.neighbors(1)
    offs = lat.shell_offsets(1).numpy()
    x, y = lat.coordinates.T
    for a, (dx, dy) in enumerate(offs):
        np.testing.assert_array_equal(nb[:, a], (x + dx) % 5 + 5 * ((y + dy) % 4))
    # every bond appears in both directions
    pairs = {(i, j) for i in range(20) for j in nb[i]}
    assert all((j, i) in pairs for i, j in pairs)


def test_triangular_positions():
    lat = sf.Lattice("triangular", (3, 3))
    np.testing.assert_allclose(lat.positions[1 + 3 * 1], [1.5, np.sqrt(3) / 2], atol=1e-15)


def test_spin_configurations():
    tri = sf.Lattice("triangular", (4, 6))
    for s in (tri.random_spins(3), tri.tetrahedral(), tri.ferromagnetic((1, 2, 3)), tri.spiral((1.0, 0.5))):
        assert s.shape == (24, 3)
        np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-14)
    t = tri.tetrahedral()
    # nearest neighbours of a tetrahedral state have S_i . S_j = -1/3
    nb = tri.neighbors(1)
    np.testing.assert_allclose(np.einsum("ic,iac->ia", t, t[nb]), -1 / 3, atol=1e-14)
    np.testing.assert_allclose(tri.tetrahedral(-1), -t)
    sq = sf.Lattice("square", 4)
    neel = sq.neel()
    np.testing.assert_allclose(np.einsum("ic,iac->ia", neel, neel[sq.neighbors(1)]), -1.0)


@pytest.mark.parametrize("args,match", [
    (("hexagonal", 4), "kind"),
    (("square", (4, 4, 4)), "2 entries"),
    (("square", (0, 4)), ">= 1"),
    (("square", "ab"), "shape"),
])
def test_bad_lattices(args, match):
    with pytest.raises(ValueError, match=match):
        sf.Lattice(*args)


def test_bad_configurations():
    with pytest.raises(ValueError, match="bipartite"):
        sf.Lattice("triangular", 4).neel()
    with pytest.raises(ValueError, match="even"):
        sf.Lattice("triangular", (3, 4)).tetrahedral()
    with pytest.raises(ValueError, match="triangular"):
        sf.Lattice("square", 4).tetrahedral()
    with pytest.raises(ValueError, match="too small"):
        sf.Lattice("square", (2, 6)).neighbors(1)


def test_neighbour_tables_read_offsets_of_any_integer_dtype_and_refuse_tensors_without_data():
    lat = sf.Lattice("square", 5)
    offsets = lat.shell_offsets(1)
    assert torch.equal(lat.neighbor_table(offsets.to(torch.int32)), lat.neighbor_table(offsets))
    # The offsets are read on the host; a tensor with no data there is an error, not a crash.
    with pytest.raises((RuntimeError, NotImplementedError), match="data"):
        lat.neighbor_table(torch.zeros((4, 2), dtype=torch.long, device="meta"))


# --- the table of lattice kinds ----------------------------------------------------------------
from spinforce.lattice import LATTICE_KINDS  # noqa: E402

GROUP_ORDER = {"D4": 8, "C6v": 12, "Oh": 48}  # orders of the Schoenflies point groups


@pytest.mark.parametrize("kind", sorted(LATTICE_KINDS))
def test_lattice_kind_table_matches_the_geometry(kind):
    info = LATTICE_KINDS[kind]
    lat = sf.Lattice(kind, 6)
    assert lat.kind_info == info and info["name"] == kind
    assert info["dim"] == lat.dim == len(lat.shape) and info["planar"] == (lat.dim == 2)
    assert info["point_group"] == lat.point_group_name
    assert len(lat.point_group_matrices) == GROUP_ORDER[info["point_group"]]
    a = np.asarray(lat.primitive_vectors)
    gram = a @ a.T
    assert info["orthogonal"] == bool(np.allclose(gram, np.diag(np.diag(gram))))
    nn = {tuple(int(x) for x in o) for o in lat.shell_offsets(1)}
    # Elementary triangles: two nearest-neighbour offsets whose difference is one too.
    has_triangles = any(tuple(p - q for p, q in zip(u, v)) in nn for u in nn for v in nn if u != v)
    assert info["triangles"] == has_triangles
    # Bipartite: every nearest-neighbour offset changes the parity of the coordinate sum.
    assert info["bipartite"] == all(sum(o) % 2 == 1 for o in nn)
