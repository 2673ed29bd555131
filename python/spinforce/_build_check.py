"""Refuse to load the compiled core against a torch other than the one it was built with."""
import torch


def check_torch_version() -> None:
    try:
        from . import _build_info
    except ImportError as exc:  # pragma: no cover - only in a broken source checkout
        raise ImportError(
            "spinforce's compiled core is missing: install the package with `pip install .`"
        ) from exc
    built = _build_info.TORCH_VERSION
    if built != torch.__version__:
        raise ImportError(
            f"spinforce was built against torch {built} but torch {torch.__version__} is installed. "
            "Rebuild it against this torch with `pip install --no-build-isolation --force-reinstall --no-deps .` "
            f"from the spinforce source, or install torch=={built}."
        )
