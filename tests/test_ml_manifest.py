"""The export manifest is checked by the C++ provider itself, and agrees with Python's descriptors."""
import pytest
import torch

import spinforce
from spinforce import _core
from spinforce.descriptors.registry import DESCRIPTOR_KINDS, descriptor_version
from spinforce.ml.model import build_model, export_torchscript, quiet_torchscript


def test_descriptor_versions_agree_across_languages():
    versions = _core._descriptor_versions()
    assert set(versions) == set(DESCRIPTOR_KINDS)
    for kind, version in versions.items():
        assert descriptor_version(kind) == version


def test_cpp_provider_refuses_other_descriptor_versions_and_kinds(tmp_path):
    lat = spinforce.Lattice("square", 6)
    model = build_model(lat, "bond_shells", {"cutoff": 1.0}, [4], "tanh", "float32")
    ts = export_torchscript(model, tmp_path / "m.ts")
    assert _core.MLForceField(str(ts), lat).descriptor_version == _core._descriptor_versions()["bond_shells"]
    for attribute, value, message in (("descriptor_version", 99, "bond_shells descriptor version 99; this "
                                       "spinforce has version 1"),
                                      ("descriptor_kind", "bispectra", "descriptor kind 'bispectra'")):
        with quiet_torchscript():
            scripted = torch.jit.load(str(ts))
            setattr(scripted, attribute, value)
            scripted.save(str(tmp_path / "edited.ts"))
        # The C++ class itself, without the Python wrapper's checks.
        with pytest.raises(ValueError, match=message):
            _core.MLForceField(str(tmp_path / "edited.ts"), lat)
