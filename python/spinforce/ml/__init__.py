"""Machine-learning force fields: descriptors, the Behler-Parrinello model, training, export."""
from .descriptors import BondShellDescriptor, make_descriptor, default_descriptor_kind  # noqa: F401
from .model import SiteEnergyModel, load_model, export_torchscript  # noqa: F401
from .training import train, load_config  # noqa: F401
from .committee import CommitteeModel, train_committee, export_committee, uncertainty_calibration  # noqa: F401
