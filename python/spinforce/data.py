"""Training-snapshot files (HDF5): schema, chunked writer with resume, and reader.

Schema, format "spinforce-dataset" version 1
--------------------------------------------
Root attributes
    format            "spinforce-dataset"
    format_version    1
    spinforce_version version that wrote the file
    lattice_kind      a name in spinforce.lattice.LATTICE_KINDS ("square", "triangular", "cubic")
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
Optional, written together (labels at several chemical potentials, for models with mu input):
    mu      (M,)      float64   the chemical potential of the frame's labels (energy = Omega at mu)
    density (M, N)    float64   electrons per site n_i = -dOmega_i/dmu (sum_i n_i = N_e(mu))
Optional group "scalars": (M,) float64 per-frame numbers a run records besides the fields, e.g.
    uncertainty_mean, uncertainty_max   the committee uncertainty of an ML run (spinforce simulate)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .outputs import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "DatasetWriter", "Dataset", "read_dataset", "default_trajectories", "open_h5",
           "file_format", "check_replaceable", "replaceable_output", "dict_differences"]

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
    mu: np.ndarray | None = None       # (M,) the frames' chemical potentials, when stored
    density: np.ndarray | None = None  # (M, N) electrons per site, when stored

    def frame_mu(self) -> np.ndarray | None:
        """(M,) the chemical potential of every frame's labels: the stored column, else the
        model's fixed mu; None for labels at fixed filling without a mu column."""
        if self.mu is not None:
            return self.mu
        mu = self.model.get("mu")
        return None if mu is None else np.full(self.num_frames, float(mu))

    @property
    def num_frames(self) -> int:
        return int(self.spins.shape[0])

    @property
    def num_sites(self) -> int:
        return int(self.spins.shape[1])

    def lattice(self):
        """The file's lattice; ValueError naming the file if its lattice attributes are invalid or do not
        match the number of sites of its spins."""
        from .lattice import Lattice
        try:
            lattice = Lattice(self.lattice_kind, self.lattice_shape)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None
        if self.spins.shape[1:] != (lattice.num_sites, 3):
            have = ", ".join(str(n) for n in self.spins.shape[1:])
            raise ValueError(f"{self.path}: its spins have shape (frames, {have}); its lattice {lattice.kind} "
                             f"{lattice.shape} needs (frames, {lattice.num_sites}, 3)")
        return lattice


class FileInUseError(ValueError):
    """An HDF5 file another process holds open for writing (HDF5 file locking)."""


def open_h5(path, mode: str = "r", what: str = "spinforce dataset") -> h5py.File:
    """Open an HDF5 file; a missing, unreadable, non-HDF5 or locked file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a {what} file")
    try:
        if mode != "r":  # h5py's "a" would turn an empty file into a new HDF5 file: check first
            h5py.File(path, "r").close()
        return h5py.File(path, mode)
    except OSError as err:
        text = str(err)
        if "unable to lock" in text.lower():  # not "truncated file: ... sblock->base_addr"
            raise FileInUseError(f"{path} is open in another process (is a run still writing it?); "
                             "wait for it to finish or stop it") from None
        if "signature" in text or "truncated" in text or "eof" in text.lower():
            raise ValueError(f"{path} is not a {what}: it is not a complete HDF5 file") from None
        raise ValueError(f"{path} cannot be read as a {what}: {text}") from None


def file_format(path) -> str | None:
    """The `format` attribute of an HDF5 file, or None for anything else (or no file). A file
    another process is writing is an error (FileInUseError), not "something else"."""
    try:
        with open_h5(path) as f:
            fmt = f.attrs.get("format")
    except FileInUseError:
        raise
    except (OSError, ValueError):
        return None
    return fmt.decode() if isinstance(fmt, bytes) else (str(fmt) if fmt is not None else None)


def _written_by_spinforce(path) -> bool:
    return (file_format(path) or "").startswith("spinforce-")


def replaceable_output(path, *, datasets=()) -> bool:
    """The `owned` test of outputs.prepare_outputs for commands that write HDF5 files: an .h5
    file, or one named in `datasets` (an output file the user named, whatever its suffix),
    counts as theirs only if spinforce wrote it; other names (.partial files, OVF frames) go by
    their pattern. functools.partial(replaceable_output, datasets=(name,)) gives the test."""
    path = Path(path)
    return (path.suffix != ".h5" and path.name not in datasets) or _written_by_spinforce(path)


def check_replaceable(path) -> None:
    """--overwrite replaces only files spinforce wrote: refuse anything else at `path`."""
    if not _written_by_spinforce(path):
        raise FileExistsError(f"{path} exists and is not a file spinforce wrote; --overwrite replaces only "
                              "spinforce's own outputs: choose another output path (nothing was changed)")


def _check_format(f: h5py.File, path) -> None:
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{path} is not a spinforce dataset (format attribute {fmt!r}, expected {FORMAT!r})")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has dataset format_version {version}; this spinforce reads version {FORMAT_VERSION}")
    missing = [name for name in _FRAME_ARRAYS if name not in f]
    if missing:
        raise ValueError(f"{path} is an incomplete spinforce dataset: it lacks {', '.join(missing)}")


def _plain(value):
    """numpy scalars and arrays from HDF5 attributes as plain Python values (for messages)."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def dict_differences(old: dict, new: dict, prefix: str = "") -> list:
    """'key: old -> new' for every (nested) key whose value differs, for resume messages."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += dict_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _frame_selection(frames):
    """A slice or an increasing list of frame indices; a single index would drop the frame axis."""
    if frames is None:
        return slice(None)
    if isinstance(frames, slice):
        return frames
    index = np.asarray(frames)
    if index.ndim != 1 or index.dtype.kind not in "iu" or np.any(np.diff(index) <= 0) or np.any(index < 0):
        raise ValueError("frames must be a slice or an increasing list of frame indices "
                         f"(slice(k, k + 1) or [k] for frame k), got {frames!r}")
    return index


def _json_attribute(attrs, key: str, path, default=None):
    """A metadata attribute stored as JSON; ValueError naming the file and the attribute if it is not JSON."""
    text = attrs.get(key, default)
    try:
        return json.loads(text)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its metadata attribute {key!r} is not valid JSON ({err})") from None


def read_dataset(path, frames: slice | list | None = None) -> Dataset:
    """Read a dataset file (optionally a slice or an increasing list of its frames)."""
    path = Path(path)
    sel = _frame_selection(frames)
    with open_h5(path) as f:
        _check_format(f, path)
        # only complete frames: a writer stopped inside `append` leaves the arrays before energy a frame longer
        complete = int(f["energy"].shape[0])
        if isinstance(sel, slice):
            sel = slice(*sel.indices(complete))
        elif len(sel) and sel[-1] >= complete:
            raise ValueError(f"{path} holds {complete} frames; frame {int(sel[-1])} does not exist")
        a = f.attrs
        if "trajectory" in f:
            trajectory = f["trajectory"][sel]
        else:
            trajectory = default_trajectories(f["step"][()])[sel]
        return Dataset(
            spins=f["spins"][sel], fields=f["fields"][sel], energy=f["energy"][sel],
            time=f["time"][sel], step=f["step"][sel], trajectory=trajectory,
            lattice_kind=str(a["lattice_kind"]), lattice_shape=tuple(int(x) for x in a["lattice_shape"]),
            method=str(a["method"]), model=_json_attribute(a, "model", path),
            method_settings=_json_attribute(a, "method_settings", path), seed=int(a["seed"]),
            provenance=_json_attribute(a, "provenance", path, "{}"),
            spinforce_version=str(a.get("spinforce_version", "")), path=str(path),
            scalars={name: f["scalars"][name][sel] for name in f.get("scalars", {})},
            mu=f["mu"][sel] if "mu" in f else None, density=f["density"][sel] if "density" in f else None,
        )


class DatasetWriter:
    """Appends frames to a dataset file in chunks.

    A new file is created with the given metadata; it appears at `path` only once its first
    frame is complete (until then it is PATH.partial, removed if the run ends before), so a run
    that fails at its start leaves nothing behind, and with ``overwrite=True`` the old file is
    replaced only then. An existing file is replaced only with ``overwrite=True`` and only if it
    is a spinforce dataset; with ``resume=True`` it is reopened for appending after its metadata
    is checked against the given one, and ``num_frames`` tells where it stopped.
    Each ``append`` is flushed, so an interrupted run loses at most the frame being written.
    ``scalars`` names per-frame numbers stored besides the fields (group "scalars"); each
    ``append`` then gives all of them. ``density=True`` stores labels at several chemical
    potentials: each ``append`` then gives the frame's mu and its (N,) densities.
    """

    def __init__(self, path, *, lattice_kind: str, lattice_shape, num_sites: int, method: str,
                 model: dict, method_settings: dict | None = None, seed: int = 0,
                 provenance: dict | None = None, overwrite: bool = False, resume: bool = False,
                 chunk_frames: int = 16, scalars=(), density: bool = False):
        self.path = Path(path)
        self.default_trajectory = 0  # the id `append` gives frames of a run (step >= 0)
        self.scalars = tuple(str(name) for name in scalars)
        self.density = bool(density)
        self._file = None
        self._staged = None
        meta = {
            "lattice_kind": lattice_kind, "lattice_shape": list(int(x) for x in lattice_shape),
            "method": method, "model": json.dumps(model, sort_keys=True),
            "method_settings": json.dumps(method_settings or {}, sort_keys=True), "seed": int(seed),
        }
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder; the output must be a file path")
        if self.path.exists() and overwrite:
            check_replaceable(self.path)
        if self.path.exists() and not overwrite:
            if not resume:
                raise FileExistsError(f"{self.path} exists; use --overwrite to replace it or --resume to continue it")
            self._file = open_h5(self.path, "a")
            try:
                _check_format(self._file, self.path)
                self._check_metadata(meta)
                stored = tuple(sorted(self._file.get("scalars", {})))
                if stored != tuple(sorted(self.scalars)):
                    raise ValueError(f"cannot resume {self.path}: it records the per-frame scalars {list(stored)}, "
                                     f"the run records {sorted(self.scalars)}")
                if ("density" in self._file) != self.density:
                    raise ValueError(f"cannot resume {self.path}: it {'holds' if 'density' in self._file else 'lacks'} "
                                     f"densities and mu per frame, the run {'writes' if self.density else 'does not write'}"
                                     " them")
            except Exception:
                self.close()
                raise
            self._truncate_partial_frame()
            if "trajectory" not in self._file:  # a file from before the trajectory column
                ids = default_trajectories(self._file["step"][()])
                self._file.create_dataset("trajectory", data=ids, maxshape=(None,), chunks=(chunk_frames,))
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staged = atomic_write(self.path)
        self._file = h5py.File(self._staged.partial, "w")
        f = self._file
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
        if self.density:
            f.create_dataset("mu", shape=(0,), maxshape=(None,), dtype="f8", chunks=(chunk_frames,))
            f.create_dataset("density", shape=(0, n), maxshape=(None, n), dtype="f8", chunks=(chunk_frames, n))
        f.flush()

    def _check_metadata(self, meta: dict) -> None:
        for key, value in meta.items():
            stored = _plain(self._file.attrs[key])
            if key in ("model", "method_settings"):
                old, new = json.loads(stored), json.loads(value)
                if old != new:
                    raise ValueError(f"cannot resume {self.path}: its {key.replace('_', ' ')} differ from this "
                                     f"run's ({'; '.join(dict_differences(old, new))})")
            elif stored != value:
                raise ValueError(f"cannot resume {self.path}: its {key.replace('_', ' ')} is {stored}, "
                                 f"this run's is {value}")

    def _truncate_partial_frame(self) -> None:
        # A crash between dataset resizes can leave the arrays with different lengths.
        self.truncate(None)

    def truncate(self, num_frames: int | None) -> None:
        """Keep the first num_frames frames (None: the complete ones), e.g. to resume a run
        that writes several frames per state from its last complete state."""
        names = [name for name in _FRAME_ARRAYS + ("trajectory", "mu", "density") if name in self._file]
        names += [f"scalars/{name}" for name in self.scalars]
        n = min(self._file[name].shape[0] for name in names)
        if num_frames is not None:
            if not 0 <= num_frames <= n:
                raise ValueError(f"num_frames must be in [0, {n}], got {num_frames}")
            n = num_frames
        for name in names:
            self._file[name].resize(n, axis=0)
        self._file.flush()

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
               scalars: dict | None = None, trajectory: int | None = None, mu: float | None = None,
               density=None) -> None:
        """Append one frame. trajectory None: `default_trajectory` for a frame of a run (step >= 0),
        a new id for an independent sample (step < 0). mu and density: given exactly when the
        file was created with density=True."""
        scalars = dict(scalars or {})
        if set(scalars) != set(self.scalars):
            raise ValueError(f"{self.path} records the per-frame scalars {sorted(self.scalars)}; "
                             f"append got {sorted(scalars)}")
        if (mu is not None and density is not None) != self.density or (mu is None) != (density is None):
            raise ValueError(f"{self.path} {'stores' if self.density else 'does not store'} mu and densities per "
                             "frame: give both mu and density to append exactly when it does")
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
        extra = ()
        if self.density:
            values["mu"], values["density"] = float(mu), np.asarray(density, dtype=np.float64)
            if values["density"].shape != (values["spins"].shape[0],):
                raise ValueError(f"density must have shape ({values['spins'].shape[0]},), got {values['density'].shape}")
            extra = ("mu", "density")
        for name in ("spins", "fields", "energy", *extra):
            if not np.isfinite(values[name]).all():
                where = f"step {int(step)}" if step >= 0 else "an independent sample"
                raise ValueError(f"{self.path}: frame {n} ({where}) has non-finite {name} (NaN or inf) and was not "
                                 "written; the run diverged or the provider failed: reduce dt, or check the model "
                                 "parameters and method settings")
        # energy is resized last: num_frames counts only complete frames.
        for name in ("spins", "fields", "time", "step", "trajectory", *(f"scalars/{k}" for k in self.scalars), *extra,
                     "energy"):
            ds = self._file[name]
            ds.resize(n + 1, axis=0)
            ds[n] = values[name]
        self._file.flush()
        if self._staged is not None:  # the first frame is complete: the file takes its place
            self._file.close()
            self._staged.commit()
            self._staged = None
            self._file = h5py.File(self.path, "a")

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
        if self._staged is not None:  # nothing was written: leave nothing behind
            self._staged.discard()
            self._staged = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
