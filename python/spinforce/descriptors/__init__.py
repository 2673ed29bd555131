"""Symmetry-invariant descriptors of local spin environments (see docs/descriptors.md), by kind
(registry.py): the group-theoretical ``Descriptor`` and the ``BondShellDescriptor`` baseline."""
from .groups import PointGroup, invariant_tensors, point_group
from .module import Descriptor
from .bond_shells import BondShellDescriptor
from .reference import local_spin_variables
from .registry import DESCRIPTOR_KINDS, descriptor_version, make_descriptor

__all__ = ["Descriptor", "BondShellDescriptor", "PointGroup", "point_group", "invariant_tensors", "local_spin_variables",
           "DESCRIPTOR_KINDS", "descriptor_version", "make_descriptor"]
