"""Symmetry-invariant descriptors: group tables, invariances, custom op vs reference, derivatives."""
import copy
import json
import warnings

import numpy as np
import pytest
import torch

import spinforce
from spinforce import Descriptor, Lattice
from spinforce.descriptors import invariant_tensors, local_spin_variables, point_group
from spinforce.descriptors.environment import variable_action

torch.set_default_dtype(torch.float64)

KINDS = {"square": (6, 6), "triangular": (6, 6), "cubic": (5, 5, 5)}
TOL = 1e-10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tests run small lattices: thread teams only cost time on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=list(KINDS))
def setup(request):
    lattice = Lattice(request.param, KINDS[request.param])
    return lattice, Descriptor(lattice)


def features(desc, spins):
    return desc(torch.as_tensor(spins, dtype=torch.float64))


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def transformed_sites(lattice, g, centre):
    """index[j] = site i such that applying g about `centre` sends site i to site j."""
    coords = lattice.coordinates
    ginv = np.linalg.inv(lattice.point_group_matrices.numpy()[g]).round().astype(np.int64)
    c0 = coords[centre]
    pre = (coords - c0) @ ginv.T + c0
    shape = np.array(lattice.shape)
    pre = pre % shape
    strides = np.cumprod([1] + list(lattice.shape[:-1]))
    return pre @ strides


# --- group tables -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_irreps_are_orthogonal_representations_with_the_character_table(kind):
    lattice = Lattice(kind, KINDS[kind])
    group = point_group(lattice)
    expected = {"D4": (8, 5), "C6v": (12, 6), "Oh": (48, 10)}[group.name]
    assert (group.order, len(group.irreps)) == expected
    dims = [D.shape[1] for D in group.irreps.values()]
    assert sum(d * d for d in dims) == group.order
    for D in group.irreps.values():
        eye = np.eye(D.shape[1])
        assert np.allclose(np.einsum("gij,gkj->gik", D, D), eye, atol=1e-12)
        for g in range(group.order):
            for h in range(group.order):
                assert np.allclose(D[g] @ D[h], D[group.table[g, h]], atol=1e-12)
    chars = np.array(list(group.characters.values()))
    assert np.allclose(chars @ chars.T / group.order, np.eye(len(chars)), atol=1e-12)
    assert np.allclose(group.det, np.round(np.linalg.det(group.cartesian)))
    # Clebsch-Gordan: the identity irrep appears once in G x G x A1 for every G.
    for name in group.irreps:
        assert len(invariant_tensors(group, name, name, group.identity_irrep)) == 1


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_chirality_sign_is_the_orientation_in_two_dimensions(kind):
    desc = Descriptor(Lattice(kind, KINDS[kind]))
    env, group = desc.environment, desc.group
    perm = Lattice(kind, KINDS[kind]).permutations(env.offsets)
    patch_perm = np.hstack([np.zeros((group.order, 1), dtype=np.int64), 1 + perm])
    _, sign = variable_action(group, patch_perm, env.pairs, env.triangles)
    nb = len(env.pairs)
    assert len(env.triangles) > 0
    assert np.array_equal(sign[:, nb:], np.repeat(group.det[:, None], len(env.triangles), axis=1))


def test_decomposition_is_a_complete_orthonormal_basis(setup):
    lattice, desc = setup
    nv = desc.environment.num_variables
    W = desc.W.numpy()[:nv]  # the rows after nv give the reference vectors
    assert W.shape == (nv, nv)
    assert np.allclose(W @ W.T, np.eye(len(W)), atol=1e-10, rtol=0)
    info = desc.describe()
    json.dumps(info)
    assert info["num_features"] == desc.num_features == sum(info["feature_counts"].values())
    assert sum(o["size"] for o in info["orbits"]) == desc.environment.num_variables
    assert all(v > 0 for v in info["feature_counts"].values())


# --- invariances ----------------------------------------------------------------------------------
def test_global_spin_rotation_invariance(setup):
    lattice, desc = setup
    rng = np.random.default_rng(1)
    spins = lattice.random_spins(seed=2)
    f0 = features(desc, spins)
    for _ in range(3):
        f1 = features(desc, spins @ random_rotation(rng).T)
        assert torch.allclose(f0, f1, atol=TOL, rtol=0)


def test_point_group_invariance_of_whole_configurations(setup):
    lattice, desc = setup
    spins = lattice.random_spins(seed=3)
    f0 = features(desc, spins)
    centre = 7
    for g in range(desc.group.order):
        pre = transformed_sites(lattice, g, centre)
        f1 = features(desc, spins[pre])  # S'(j) = S(g^-1 j)
        # The feature of site j in the new configuration equals that of its preimage.
        assert torch.allclose(f1, f0[torch.as_tensor(pre)], atol=TOL, rtol=0), f"operation {g}"


def test_time_reversal_evenness(setup):
    lattice, desc = setup
    spins = lattice.random_spins(seed=4)
    assert torch.allclose(features(desc, spins), features(desc, -spins), atol=TOL, rtol=0)


def test_translation_equivariance(setup):
    lattice, desc = setup
    spins = lattice.random_spins(seed=5)
    shift = lattice.neighbor_table(torch.as_tensor(lattice.shell_offsets(1)[:1])).numpy()[:, 0]
    assert torch.allclose(features(desc, spins[shift]), features(desc, spins)[torch.as_tensor(shift)], atol=TOL,
                          rtol=0)


# --- op vs reference, derivatives -----------------------------------------------------------------
def test_op_equals_reference(setup):
    lattice, desc = setup
    ref = Descriptor.from_settings(lattice, {**desc.settings(), "implementation": "reference"})
    spins = torch.as_tensor(lattice.random_spins(seed=6)).requires_grad_(True)
    f_op, f_ref = desc(spins), ref(spins)
    assert torch.allclose(f_op, f_ref, atol=1e-12, rtol=0)
    w = torch.randn_like(f_op)
    (g_op,) = torch.autograd.grad((f_op * w).sum(), spins, create_graph=True)
    (g_ref,) = torch.autograd.grad((f_ref * w).sum(), spins, create_graph=True)
    assert torch.allclose(g_op, g_ref, atol=1e-12 * float(g_ref.detach().abs().max()), rtol=0)
    # A force-type loss: second derivatives agree too.
    (h_op,) = torch.autograd.grad((g_op**2).sum(), spins)
    (h_ref,) = torch.autograd.grad((g_ref**2).sum(), spins)
    assert torch.allclose(h_op, h_ref, atol=1e-12 * float(h_ref.detach().abs().max()), rtol=0)


def test_op_gradcheck_and_gradgradcheck():
    lattice = Lattice("triangular", (5, 5))
    desc = Descriptor(lattice)
    torch.manual_seed(0)
    patch = torch.randn(2, 1 + len(desc.neighbor_offsets), 3, requires_grad=True)
    pairs, triangles = desc.pairs[::3], desc.triangles[::3]  # every kind of variable, fewer of them
    op = lambda p: torch.ops.spinforce.local_spin_variables(p, pairs, triangles)  # noqa: E731
    assert torch.allclose(op(patch), local_spin_variables(patch, pairs, triangles), atol=1e-13)
    assert torch.autograd.gradcheck(op, (patch,))
    assert torch.autograd.gradgradcheck(op, (patch,))


def _invariant_args(desc):
    plan = [desc.norm_of, desc.entry_of, desc.phase_r, desc.phase_norm, desc.kappa_r1, desc.kappa_r2, desc.kappa_n1,
            desc.kappa_n2, desc.kappa_of, desc.bis_c, desc.bis_k, desc.bis_of, desc.kappa_coef]
    return plan, [desc.num_norms, desc.num_power, desc.num_kappa, desc.num_bispectrum], desc.floor_sq


def test_invariants_op_gradcheck_and_gradgradcheck():
    desc = Descriptor(Lattice("square", (5, 5)))
    plan, sizes, floor_sq = _invariant_args(desc)
    torch.manual_seed(1)
    E = desc.num_coefficients - desc.num_a1
    c = torch.randn(2, E, requires_grad=True)
    rho = (0.3 * torch.randn(2, desc.W.size(0) - desc.num_coefficients)).requires_grad_(True)
    op = lambda c, rho: torch.ops.spinforce.descriptor_invariants(c, rho, plan, sizes, floor_sq)  # noqa: E731
    assert torch.autograd.gradcheck(op, (c, rho))
    assert torch.autograd.gradgradcheck(op, (c, rho))
    with pytest.raises(ValueError, match="plan"):
        torch.ops.spinforce.descriptor_invariants(c, rho, plan[:-1], sizes, floor_sq)
    with pytest.raises(ValueError, match="plan"):
        torch.ops.spinforce.descriptor_invariants(c, rho, plan, [sizes[0] - 1] + sizes[1:], floor_sq)


def test_invariant_plan_is_passed_by_name_in_the_op_order():
    """Descriptor hands descriptor_invariants its buffers in the order the op declares, and the op
    names the plan tensor at fault when the list is wrong."""
    desc = Descriptor(Lattice("square", (5, 5)))
    names = list(spinforce._core.invariant_plan_tensors)
    plan = desc.plan_tensors()
    assert len(names) == len(plan) == 13 and len(set(names)) == 13
    for name, tensor in zip(names, plan):
        assert tensor is getattr(desc, name), name
    _, sizes, floor_sq = _invariant_args(desc)
    c = torch.randn(2, desc.num_coefficients - desc.num_a1)
    rho = torch.randn(2, desc.W.size(0) - desc.num_coefficients)
    op = torch.ops.spinforce.descriptor_invariants

    def wrong(name, value):
        return [value if n == name else t for n, t in zip(names, plan)]

    def at(name):
        return rf"plan\[{names.index(name)}\] \({name}\) "

    with pytest.raises(ValueError, match=r"plan must hold 13 tensors \(norm_of, .*, kappa_coef\), got 12"):
        op(c, rho, plan[:-1], sizes, floor_sq)
    with pytest.raises(ValueError, match=at("bis_of") + "must be a 1-d Long tensor"):
        op(c, rho, wrong("bis_of", desc.kappa_coef), sizes, floor_sq)
    with pytest.raises(ValueError, match=at("kappa_coef") + "must be a 1-d Double tensor"):
        op(c, rho, wrong("kappa_coef", desc.kappa_coef.float()), sizes, floor_sq)
    with pytest.raises(ValueError, match=at("phase_r") + rf"has {len(desc.phase_r) - 1} entries, expected "
                       rf"{len(desc.phase_r)}"):
        op(c, rho, wrong("phase_r", desc.phase_r[:-1]), sizes, floor_sq)
    with pytest.raises(ValueError, match=at("bis_k") + rf"entries must lie in \[0, {desc.num_kappa}\)"):
        op(c, rho, wrong("bis_k", desc.bis_k + desc.num_kappa), sizes, floor_sq)


def test_descriptor_refuses_a_core_with_other_plan_tensors(monkeypatch):
    """A core built from other sources, whose op takes plan tensors the Descriptor does not build
    (or does not take one it builds), is refused at construction."""
    import spinforce.descriptors.module as module
    declared = module.PLAN_TENSORS
    monkeypatch.setattr(module, "PLAN_TENSORS", declared + ("kappa_weight",))
    with pytest.raises(RuntimeError, match="kappa_weight.*rebuild spinforce._core"):
        Descriptor(Lattice("square", (5, 5)))
    monkeypatch.setattr(module, "PLAN_TENSORS", declared[:-1])
    with pytest.raises(RuntimeError, match="builds .*kappa_coef.*rebuild spinforce._core"):
        Descriptor(Lattice("square", (5, 5)))


def test_descriptor_gradcheck_and_gradgradcheck():
    lattice = Lattice("square", (5, 5))
    desc = Descriptor(lattice)
    spins = torch.as_tensor(lattice.random_spins(seed=7)).requires_grad_(True)
    w = torch.randn(lattice.num_sites, desc.num_features)
    energy = lambda s: (desc(s) * w).sum(1)  # noqa: E731
    assert torch.autograd.gradcheck(energy, (spins,), fast_mode=True)
    assert torch.autograd.gradgradcheck(energy, (spins,), fast_mode=True)


def test_meta_kernels_give_shapes():
    patch = torch.empty(7, 5, 3, device="meta")
    pairs, triangles = torch.tensor([[0, 1], [2, 3]], device="meta"), torch.tensor([[0, 1, 2]], device="meta")
    assert torch.ops.spinforce.local_spin_variables(patch, pairs, triangles).shape == (7, 3)


@pytest.mark.gpu
def test_cuda_op_matches_cpu():
    lattice = Lattice("triangular", (8, 8))
    desc = Descriptor(lattice)
    spins = torch.as_tensor(lattice.random_spins(seed=13)).requires_grad_(True)
    f_cpu = desc(spins)
    (g_cpu,) = torch.autograd.grad(f_cpu.sum(), spins, create_graph=True)
    (h_cpu,) = torch.autograd.grad((g_cpu**2).sum(), spins)
    cuda = desc.to("cuda")
    s = spins.detach().cuda().requires_grad_(True)
    f = cuda(s)
    (g,) = torch.autograd.grad(f.sum(), s, create_graph=True)
    (h,) = torch.autograd.grad((g**2).sum(), s)
    assert torch.allclose(f.cpu(), f_cpu, atol=1e-12)
    assert torch.allclose(g.cpu(), g_cpu, atol=1e-10, rtol=0)
    assert torch.allclose(h.cpu(), h_cpu, atol=1e-8 * float(h_cpu.abs().max()))


# --- physics: what is equal and what differs ------------------------------------------------------
def test_tetrahedral_chiralities_have_identical_features():
    lattice = Lattice("triangular", (6, 6))
    desc = Descriptor(lattice)
    plus, minus = features(desc, lattice.tetrahedral(+1)), features(desc, lattice.tetrahedral(-1))
    assert torch.allclose(plus, minus, atol=TOL, rtol=0)
    # Every site of the tetrahedral state is equivalent (translation + global spin rotation).
    assert torch.allclose(plus, plus[:1].expand_as(plus), atol=TOL, rtol=0)
    # The mirror image (y -> -y about a site) of the + state has the same features too.
    mirror = next(g for g in range(desc.group.order) if desc.group.det[g] < 0)
    pre = transformed_sites(lattice, mirror, 0)
    assert torch.allclose(features(desc, lattice.tetrahedral(+1)[pre]), plus, atol=TOL, rtol=0)


def test_unrelated_environments_differ(setup):
    lattice, desc = setup
    for seed in range(3):
        a, b = features(desc, lattice.random_spins(seed=10 + seed)), features(desc, lattice.random_spins(seed=20 + seed))
        assert (a - b).abs().max(dim=1).values.min() > 1e-3
    q = np.full(lattice.dim, 2 * np.pi / lattice.shape[0])
    spiral = lattice.spiral(q, axis_normal=(0.3, 0.1, 1.0))
    rng = np.random.default_rng(8)
    distorted = spiral + 0.01 * rng.normal(size=spiral.shape)
    distorted /= np.linalg.norm(distorted, axis=1, keepdims=True)
    diff = (features(desc, spiral) - features(desc, distorted)).abs().max(dim=1).values
    assert diff.min() > 1e-5
    if lattice.dim == 2:
        # Spirals of different pitch are told apart as well.
        other = lattice.spiral(2 * q, axis_normal=(0.3, 0.1, 1.0))
        assert (features(desc, spiral) - features(desc, other)).abs().max(dim=1).values.min() > 1e-3


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_features_determine_the_neighbourhood_locally(kind):
    """Completeness check: with the spins outside the cutoff held fixed, the Jacobian of one site's
    features with respect to the 2M tangent directions of its M neighbourhood spins has rank at
    least 2M - 3 (everything but a global rotation) at a generic configuration."""
    lattice = Lattice(kind, (8, 8))
    desc = Descriptor(lattice)
    spins = torch.as_tensor(lattice.random_spins(seed=14))
    jac = torch.autograd.functional.jacobian(lambda s: desc(s)[0], spins)  # (F, N, 3)
    hood = [0] + desc.neighbors[0].tolist()
    columns = []
    for j in hood:
        n = spins[j].numpy()
        a = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
        a /= np.linalg.norm(a)
        columns += [jac[:, j].numpy() @ a, jac[:, j].numpy() @ np.cross(n, a)]
    sv = np.linalg.svd(np.array(columns).T, compute_uv=False)
    assert (sv > 1e-6 * sv[0]).sum() >= 2 * len(hood) - 3


def test_chirality_sensitive_but_time_reversal_even():
    """A non-coplanar state and its coplanar projection differ: chirality enters through even terms."""
    lattice = Lattice("triangular", (6, 6))
    desc = Descriptor(lattice)
    tet = lattice.tetrahedral(+1)
    flat = tet * np.array([1.0, 1.0, 0.0])
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    names = desc.feature_names
    chir = torch.as_tensor([("chirality" in n) for n in names])
    f_tet, f_flat = features(desc, tet), features(desc, flat)
    assert f_flat[:, chir].abs().max() < 1e-12
    assert f_tet[:, chir].abs().max() > 0.1


def ordered_states(lattice):
    states = {"ferro": lattice.ferromagnetic((0.2, 0.3, 1.0))}
    if lattice.kind == "triangular":
        states["tetrahedral"] = lattice.tetrahedral(1)
    else:
        states["neel"] = lattice.neel()
    return states


def test_no_nan_gradients_on_ordered_states(setup):
    _, desc = setup
    lattice = Lattice(desc.lattice_kind, 6)  # even sides for the Neel state
    table = lattice.neighbor_table(desc.neighbor_offsets)
    for name, state in ordered_states(lattice).items():
        spins = torch.as_tensor(state).requires_grad_(True)
        f = desc.features(spins, table)
        w = torch.randn(desc.num_features)
        (grad,) = torch.autograd.grad((f * w).sum(), spins, create_graph=True)
        (hess,) = torch.autograd.grad((grad**2).sum(), spins)
        assert torch.isfinite(f).all() and torch.isfinite(grad).all() and torch.isfinite(hess).all(), name


# --- TorchScript, persistence, other lattice sizes ------------------------------------------------
class _Energy(torch.nn.Module):
    def __init__(self, desc):
        super().__init__()
        self.desc = desc
        self.linear = torch.nn.Linear(desc.num_features, 1)

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        return self.linear(self.desc.features(spins, neighbors)).sum()


class _Forces(torch.nn.Module):
    def __init__(self, energy):
        super().__init__()
        self.energy = energy

    def forward(self, spins: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        s = spins.detach().requires_grad_(True)
        grads = torch.autograd.grad([self.energy(s, neighbors)], [s])
        g = grads[0]
        assert g is not None
        return -g


def test_torchscript_roundtrip_and_any_lattice_size(tmp_path):
    small, big = Lattice("triangular", (6, 6)), Lattice("triangular", (8, 10))
    desc = Descriptor(small)
    model = _Energy(desc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        scripted.save(str(tmp_path / "m.pt"))
        loaded = torch.jit.load(str(tmp_path / "m.pt"))
    spins = torch.as_tensor(big.random_spins(seed=9))
    table = big.neighbor_table(desc.neighbor_offsets)
    assert torch.allclose(loaded(spins, table), model(spins, table), atol=1e-12)
    # Forces through the custom op's C++ autograd, inside TorchScript, equal the eager ones.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forces = torch.jit.script(_Forces(model))
    s = spins.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(-model(s, table), s)
    assert torch.allclose(forces(spins, table), expected, atol=1e-12)
    # A scripted Descriptor exposes features and features_batch (callable from C++ via run_method).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted_desc = torch.jit.script(desc)
    batch = torch.stack([spins, -spins])
    assert torch.allclose(scripted_desc.features_batch(batch, table)[1], desc.features(spins, table), atol=1e-12)
    rebuilt = Descriptor.from_settings(big, json.loads(json.dumps(desc.settings())))
    assert torch.allclose(rebuilt(spins), desc.features(spins, table), atol=1e-13)
    assert rebuilt.num_features == desc.num_features


def test_batch_equals_one_by_one():
    lattice = Lattice("triangular", (6, 6))
    desc = Descriptor(lattice)
    batch = torch.stack([torch.as_tensor(lattice.random_spins(seed=k)) for k in range(3)])
    out = desc.features_batch(batch, desc.neighbors)
    assert out.shape == (3, lattice.num_sites, desc.num_features)
    for k in range(3):
        assert torch.allclose(out[k], desc(batch[k]), atol=1e-14)
    with pytest.raises(ValueError, match="spins"):
        desc.features_batch(batch[0], desc.neighbors)


def test_float32_matches_float64():
    lattice = Lattice("square", (6, 6))
    desc = Descriptor(lattice)
    spins = torch.as_tensor(lattice.random_spins(seed=11))
    # float32 round-off on features of order 1 (measured 8.9e-7 here)
    assert torch.allclose(desc(spins.float()).double(), desc(spins), atol=2e-6, rtol=0)
    # A model cast with .float() casts the descriptor's tables too; it still runs.
    single = copy.deepcopy(desc).float()
    assert torch.allclose(single(spins.float()).double(), desc(spins), atol=2e-6, rtol=0)


# --- bad input --------------------------------------------------------------------------------------
def test_bad_input_raises_value_error():
    lattice = Lattice("square", (6, 6))
    desc = Descriptor(lattice)
    spins = torch.as_tensor(lattice.random_spins(seed=12))
    with pytest.raises(ValueError, match="spins"):
        desc(spins[:, :2])
    with pytest.raises(ValueError, match="floating"):
        desc(spins.long())
    with pytest.raises(ValueError, match="neighbors"):
        desc.features(spins, desc.neighbors[:, :3])
    with pytest.raises(ValueError, match="neighbors"):
        desc.features(spins[:10], desc.neighbors)
    for kwargs, word in [({"cutoff": -1.0}, "cutoff"), ({"cutoff": 0.5}, "cutoff"), ({"floor": 0.0}, "floor"),
                         ({"bond_cutoff": 3.0}, "bond_cutoff"), ({"implementation": "fast"}, "implementation"),
                         ({"block_radius": float("nan")}, "block_radius")]:
        with pytest.raises(ValueError, match=word):
            Descriptor(lattice, **kwargs)
    with pytest.raises(ValueError, match="too small"):
        Descriptor(Lattice("square", (4, 4)))
    with pytest.raises(ValueError, match="version"):
        Descriptor.from_settings(lattice, {**desc.settings(), "version": 99})
    with pytest.raises(ValueError, match="lattice"):
        Descriptor.from_settings(Lattice("triangular", (6, 6)), desc.settings())
    patch = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="pairs"):
        torch.ops.spinforce.local_spin_variables(patch, torch.tensor([[0, 5]]), torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="patch"):
        torch.ops.spinforce.local_spin_variables(patch[..., :2], torch.tensor([[0, 1]]),
                                                 torch.zeros(0, 3, dtype=torch.long))
