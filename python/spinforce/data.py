"""Training-snapshot files (HDF5): schema, chunked writer with resume, and reader.

Schema, format "spinforce-dataset" version 1
--------------------------------------------
Root attributes
    format            "spinforce-dataset"
    format_version    1
    spinforce_version version that wrote the file
    lattice_kind      "square" | "triangular" | "cubic"
    lattice_shape     int array, e.g. [12, 12]
    method            the field provider, e.g. "ed", "kpm", "heisenberg"
    model             JSON: model parameters (t, t2, t3, J, mu, filling, kT, ...)
    method_settings   JSON: accuracy settings of the method (moments, probing distance, ...)
    seed              int
    provenance        JSON: anything else needed to regenerate the file (the run config, ...)
Datasets (M snapshots of N sites, chunked and extendable along M)
    spins   (M, N, 3) float64   unit spins
    fields  (M, N, 3) float64   H_i = -dE/dS_i
    energy  (M,)      float64   total energy (the potential whose gradient gives the fields)
    time    (M,)      float64   simulation time of the frame (NaN for independent samples)
    step    (M,)      int64     integrator step of the frame (-1 for independent samples)
    trajectory (M,)   int64     which trajectory of the file the frame belongs to: frames of one
                                LLG run share an id, every independent sample has an id of its
                                own. Training holds out whole trajectories (spinforce.ml.training).
                                Files written before this column existed read as: every frame
                                with step >= 0 is trajectory 0, every independent sample
                                (step -1) a trajectory of its own (`default_trajectories`).
Optional group "scalars": (M,) float64 per-frame numbers a run records besides the fields, e.g.
    uncertainty_mean, uncertainty_max   the committee uncertainty of an ML run (spinforce simulate)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "DatasetWriter", "Dataset", "read_dataset", "default_trajectories"]

FORMAT = "spinforce-dataset"
FORMAT_VERSION = 1
_FRAME_ARRAYS = ("spins", "fields", "energy", "time", "step")


def default_trajectories(step) -> np.ndarray:
    """Trajectory ids of a file without a trajectory column: frames with step >= 0 form
    trajectory 0, each independent sample (step < 0) is a trajectory 1, 2, ... of its own."""
    step = np.asarray(step)
    ids = np.zeros(step.shape, dtype=np.int64)
    samples = step < 0
    ids[samples] = 1 + np.arange(int(samples.sum()))
    return ids


def _version() -> str:
    from ._version import __version__
    return __version__


@dataclass
class Dataset:
    """A dataset read into memory."""

    spins: np.ndarray
    fields: np.ndarray
    energy: np.ndarray
    time: np.ndarray
    step: np.ndarray
    trajectory: np.ndarray
    lattice_kind: str
    lattice_shape: tuple
    method: str
    model: dict
    method_settings: dict
    seed: int
    provenance: dict = field(default_factory=dict)
    spinforce_version: str = ""
    path: str = ""
    scalars: dict = field(default_factory=dict)  # name -> (M,) per-frame numbers (group "scalars")

    @property
    def num_frames(self) -> int:
        return int(self.spins.shape[0])

    @property
    def num_sites(self) -> int:
        return int(self.spins.shape[1])

    def lattice(self):
        from .lattice import Lattice
        return Lattice(self.lattice_kind, self.lattice_shape)


def _check_format(f: h5py.File, path) -> None:
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{path} is not a spinforce dataset (format attribute {fmt!r}, expected {FORMAT!r})")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has dataset format_version {version}; this spinforce reads version {FORMAT_VERSION}")


def read_dataset(path, frames: slice | None = None) -> Dataset:
    """Read a dataset file (optionally a slice of its frames)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    sel = frames if frames is not None else slice(None)
    with h5py.File(path, "r") as f:
        _check_format(f, path)
        a = f.attrs
        if "trajectory" in f:
            trajectory = f["trajectory"][sel]
        else:
            trajectory = default_trajectories(f["step"][()])[sel]
        return Dataset(
            spins=f["spins"][sel], fields=f["fields"][sel], energy=f["energy"][sel],
            time=f["time"][sel], step=f["step"][sel], trajectory=trajectory,
            lattice_kind=str(a["lattice_kind"]), lattice_shape=tuple(int(x) for x in a["lattice_shape"]),
            method=str(a["method"]), model=json.loads(a["model"]),
            method_settings=json.loads(a["method_settings"]), seed=int(a["seed"]),
            provenance=json.loads(a.get("provenance", "{}")),
            spinforce_version=str(a.get("spinforce_version", "")), path=str(path),
            scalars={name: f["scalars"][name][sel] for name in f.get("scalars", {})},
        )


class DatasetWriter:
    """Appends frames to a dataset file in chunks.

    A new file is created with the given metadata. An existing file is never overwritten
    unless ``overwrite=True``; with ``resume=True`` it is reopened for appending after its
    metadata is checked against the given one, and ``num_frames`` tells where it stopped.
    Each ``append`` is flushed, so an interrupted run loses at most the frame being written.
    ``scalars`` names per-frame numbers stored besides the fields (group "scalars"); each
    ``append`` then gives all of them.
    """

    def __init__(self, path, *, lattice_kind: str, lattice_shape, num_sites: int, method: str,
                 model: dict, method_settings: dict | None = None, seed: int = 0,
                 provenance: dict | None = None, overwrite: bool = False, resume: bool = False,
                 chunk_frames: int = 16, scalars=()):
        self.path = Path(path)
        self.default_trajectory = 0  # the id `append` gives frames of a run (step >= 0)
        self.scalars = tuple(str(name) for name in scalars)
        meta = {
            "lattice_kind": lattice_kind, "lattice_shape": list(int(x) for x in lattice_shape),
            "method": method, "model": json.dumps(model, sort_keys=True),
            "method_settings": json.dumps(method_settings or {}, sort_keys=True), "seed": int(seed),
        }
        if self.path.exists() and not overwrite:
            if not resume:
                raise FileExistsError(
                    f"{self.path} exists; pass overwrite=True to replace it or resume=True to continue it")
            self._file = h5py.File(self.path, "a")
            _check_format(self._file, self.path)
            for key, value in meta.items():
                stored = self._file.attrs[key]
                stored = list(int(x) for x in stored) if key == "lattice_shape" else stored
                if (int(stored) if key == "seed" else stored) != value:
                    self._file.close()
                    raise ValueError(f"cannot resume {self.path}: its {key} is {stored!r}, the run has {value!r}")
            stored = tuple(sorted(self._file.get("scalars", {})))
            if stored != tuple(sorted(self.scalars)):
                self._file.close()
                raise ValueError(f"cannot resume {self.path}: it records the per-frame scalars {list(stored)}, "
                                 f"the run records {sorted(self.scalars)}")
            self._truncate_partial_frame()
            if "trajectory" not in self._file:  # a file from before the trajectory column
                ids = default_trajectories(self._file["step"][()])
                self._file.create_dataset("trajectory", data=ids, maxshape=(None,), chunks=(chunk_frames,))
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".partial")
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["spinforce_version"] = _version()
            f.attrs["provenance"] = json.dumps(provenance or {}, sort_keys=True, default=str)
            for key, value in meta.items():
                f.attrs[key] = value
            n = int(num_sites)
            for name, shape, dtype in (("spins", (n, 3), "f8"), ("fields", (n, 3), "f8"), ("energy", (), "f8"),
                                       ("time", (), "f8"), ("step", (), "i8"), ("trajectory", (), "i8")):
                f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                 chunks=(chunk_frames, *shape))
            for name in self.scalars:
                f.create_dataset(f"scalars/{name}", shape=(0,), maxshape=(None,), dtype="f8", chunks=(256,))
        os.replace(tmp, self.path)
        self._file = h5py.File(self.path, "a")

    def _truncate_partial_frame(self) -> None:
        # A crash between dataset resizes can leave the arrays with different lengths.
        names = [name for name in _FRAME_ARRAYS + ("trajectory",) if name in self._file]
        names += [f"scalars/{name}" for name in self.scalars]
        n = min(self._file[name].shape[0] for name in names)
        for name in names:
            self._file[name].resize(n, axis=0)

    @property
    def num_frames(self) -> int:
        return int(self._file["energy"].shape[0])

    def last_frame(self) -> dict:
        """The last stored frame (spins, fields, energy, time, step), for resuming a run."""
        if self.num_frames == 0:
            raise ValueError(f"{self.path} holds no frames to resume from")
        return self.frame(self.num_frames - 1)

    def frame(self, index: int) -> dict:
        """Stored frame `index` (spins, fields, energy, time, step)."""
        if not 0 <= index < self.num_frames:
            raise ValueError(f"frame index must be in [0, {self.num_frames}), got {index}")
        return {**{name: self._file[name][index] for name in _FRAME_ARRAYS},
                **{name: self._file["scalars"][name][index] for name in self.scalars}}

    @property
    def provenance(self) -> dict:
        """The provenance record stored when the file was created."""
        return json.loads(self._file.attrs.get("provenance", "{}"))

    @property
    def steps(self) -> np.ndarray:
        """The step column of the complete frames (-1 marks independent samples)."""
        return self._file["step"][: self.num_frames]

    @property
    def trajectories(self) -> np.ndarray:
        """The trajectory column of the complete frames."""
        return self._file["trajectory"][: self.num_frames]

    def append(self, spins, fields, energy: float, time: float = float("nan"), step: int = -1,
               scalars: dict | None = None, trajectory: int | None = None) -> None:
        """Append one frame. trajectory None: `default_trajectory` for a frame of a run (step >= 0),
        a new id for an independent sample (step < 0)."""
        scalars = dict(scalars or {})
        if set(scalars) != set(self.scalars):
            raise ValueError(f"{self.path} records the per-frame scalars {sorted(self.scalars)}; "
                             f"append got {sorted(scalars)}")
        n = self.num_frames
        if trajectory is None:
            if step >= 0:
                trajectory = self.default_trajectory
            else:
                ids = self.trajectories
                trajectory = int(max(ids.max() + 1 if n else 0, self.default_trajectory + 1))
        values = {"spins": np.asarray(spins, dtype=np.float64), "fields": np.asarray(fields, dtype=np.float64),
                  "energy": float(energy), "time": float(time), "step": int(step), "trajectory": int(trajectory),
                  **{f"scalars/{name}": float(v) for name, v in scalars.items()}}
        # energy is resized last: num_frames counts only complete frames.
        for name in ("spins", "fields", "time", "step", "trajectory", *(f"scalars/{k}" for k in self.scalars),
                     "energy"):
            ds = self._file[name]
            ds.resize(n + 1, axis=0)
            ds[n] = values[name]
        self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
