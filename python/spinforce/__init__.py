"""spinforce: machine-learning force fields for LLG dynamics of itinerant magnets."""
from .runtime import sleep_idle_openmp_threads as _sleep_idle_openmp_threads

_sleep_idle_openmp_threads()  # before torch loads the OpenMP runtime (see runtime.py)

from ._build_check import check_torch_version as _check_torch_version  # noqa: E402

_check_torch_version()

from . import _core  # noqa: E402
from .lattice import Lattice  # noqa: E402
from .electrons import SDModel, ExactDiagonalization, mu_for_filling, model_at_mu  # noqa: E402
from .kpm import KPM  # noqa: E402
from .providers import FieldResult  # noqa: E402
from .dynamics import Heisenberg, LLG, spin_temperature  # noqa: E402
from .descriptors import Descriptor  # noqa: E402
from ._version import __version__  # noqa: E402
from .ml.provider import MLForceField  # noqa: E402

__all__ = ["Lattice", "SDModel", "ExactDiagonalization", "mu_for_filling", "model_at_mu", "KPM", "FieldResult", "Heisenberg", "LLG",
           "spin_temperature", "Descriptor", "MLForceField", "__version__"]
