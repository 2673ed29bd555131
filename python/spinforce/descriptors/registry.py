"""The descriptors a force field can be built on, by kind, and the interface they share.

A descriptor is an ``nn.Module`` with
  kind              str, its name in a training config (``descriptor = {kind = ...}``)
  version           int, bumped whenever the features of the same settings change
  neighbor_offsets  (m, dim) int64 buffer: the neighbourhood, as lattice offsets
  num_features      int
  lattice_kind      str, the lattice kind it was built for
  images            int, rows of features per site: 1 for invariant features; |G| for features
                    given once per point-group operation, over which the network is averaged
  features(spins (N,3), neighbors (N,m)) -> (N * images, F), TorchScript-compatible, differentiable
                    in spins, the rows of site i at i*images .. (i+1)*images - 1
  site_features(spins, neighbors) -> (N, F): one row per site, from which every image's row is
                    read: features' row i*images + g is site row i at the columns image_columns[g]
  image_columns     (images, F) int64 buffer (not saved: rebuilt from the settings); row 0 the
                    identity. A force field runs its first layer on the site rows with the
                    columns permuted into its weights, all images in one product (ml/model.py)
  image_features(spins, neighbors, image (N,)) -> (N, F), only where images > 1: row i is
                    features' row i*images + image[i] (training with point_group = "sample")
  settings() -> dict, and a classmethod from_settings(lattice, settings)
  every keyword of its constructor kept as an attribute of the same name, so that an exported
                    (TorchScript) file holds them and the descriptor can be rebuilt from it
                    (``setting_names``; spinforce.ml.committee.model_from_exported)
where ``neighbors = lattice.neighbor_table(neighbor_offsets)``. Adding one: a module in this
folder and a line in KINDS.

Kinds:
  "group"       the group-theoretical descriptor ``spinforce.Descriptor`` (the default)
  "bond_shells" ``BondShellDescriptor``: bond sums per neighbour shell, a baseline
  "ordered_bonds" ``OrderedBondDescriptor``: every bond of the neighbourhood in place, one row
                per point-group operation (the network is averaged over them)
"""
from __future__ import annotations

import inspect

from .bond_shells import BondShellDescriptor
from .module import Descriptor
from .ordered_bonds import OrderedBondDescriptor

__all__ = ["KINDS", "DESCRIPTOR_KINDS", "DEFAULT_KIND", "descriptor_version", "make_descriptor", "setting_names"]

KINDS = {"group": Descriptor, "bond_shells": BondShellDescriptor, "ordered_bonds": OrderedBondDescriptor}
DESCRIPTOR_KINDS = tuple(KINDS)
DEFAULT_KIND = "group"


def descriptor_version(kind: str) -> int | None:
    """Version of the descriptor `kind` in this installation (None for a kind it does not have)."""
    cls = KINDS.get(kind)
    return None if cls is None else int(cls.version)


def setting_names(kind: str) -> list[str]:
    """The settings a descriptor of `kind` is built from: the keywords of its constructor."""
    parameters = inspect.signature(KINDS[kind].__init__).parameters
    return [name for name in parameters if name not in ("self", "lattice")]


def make_descriptor(kind: str, lattice, settings: dict):
    """Build a descriptor of `kind` on `lattice` from its settings dict."""
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"descriptor kind must be one of {list(DESCRIPTOR_KINDS)}, got {kind!r}")
    try:
        return cls.from_settings(lattice, settings)
    except TypeError as exc:
        raise ValueError(f"bad {kind} descriptor settings {settings!r}: {exc}") from exc
