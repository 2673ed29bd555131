"""Symmetry-invariant descriptors of local spin environments (see docs/descriptors.md), by kind
(registry.py): the group-theoretical ``Descriptor``, the ``BondShellDescriptor`` baseline and the
``OrderedBondDescriptor`` of every bond in place, for a point-group-averaged network."""
from .groups import PointGroup, invariant_tensors, point_group
from .module import Descriptor
from .bond_shells import BondShellDescriptor
from .ordered_bonds import OrderedBondDescriptor
from .reference import local_spin_variables
from .registry import DESCRIPTOR_KINDS, descriptor_version, make_descriptor

__all__ = ["Descriptor", "BondShellDescriptor", "OrderedBondDescriptor", "PointGroup", "point_group", "invariant_tensors",
           "local_spin_variables", "DESCRIPTOR_KINDS", "descriptor_version", "make_descriptor"]
