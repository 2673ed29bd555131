from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _source_tree_version() -> str:
    """The version pyproject.toml declares, for a source tree run without installing
    (PYTHONPATH=python); 0.0.0+unknown when there is none."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, ValueError, ModuleNotFoundError):
        return "0.0.0+unknown"


try:
    __version__ = version("spinforce")
except PackageNotFoundError:
    __version__ = _source_tree_version()
