"""Machine-learning force fields: the Behler-Parrinello model, training, committees, export.

Names load on first use, so that ``import spinforce`` (which needs only the provider) does not
import the trainer, h5py or matplotlib.
"""
import importlib

_NAMES = {"SiteEnergyModel": "model", "load_model": "model", "export_torchscript": "model", "export_pt2": "pt2",
          "train": "training", "load_config": "training",
          "CommitteeModel": "committee", "train_committee": "committee", "export_committee": "committee",
          "uncertainty_calibration": "committee"}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
