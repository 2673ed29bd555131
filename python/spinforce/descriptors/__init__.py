"""Symmetry-invariant descriptors of local spin environments (see docs/descriptors.md)."""
from .groups import PointGroup, invariant_tensors, point_group
from .module import Descriptor
from .reference import local_spin_variables

__all__ = ["Descriptor", "PointGroup", "point_group", "invariant_tensors", "local_spin_variables"]
