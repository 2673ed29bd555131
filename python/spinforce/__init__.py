"""spinforce: machine-learning force fields for LLG dynamics of itinerant magnets."""
from ._build_check import check_torch_version as _check_torch_version

_check_torch_version()

from . import _core  # noqa: E402
from .lattice import Lattice  # noqa: E402
from .electrons import SDModel, ExactDiagonalization  # noqa: E402
from .providers import FieldResult  # noqa: E402
from ._version import __version__  # noqa: E402
from .ml.provider import MLForceField  # noqa: E402

__all__ = ["Lattice", "SDModel", "ExactDiagonalization", "FieldResult", "MLForceField", "__version__"]
