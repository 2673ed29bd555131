"""Config files for tests that run the command line: a dict of plain values written as TOML."""
import json
from pathlib import Path


def toml_value(value) -> str:
    """A TOML value: a dict as an inline table, a list item by item, anything else as JSON writes it."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value) if isinstance(value, Path) else value)


def write_toml(cfg: dict, path) -> Path:
    """cfg as a TOML file at path: its top-level values first, then one table per dict."""
    plain = [f"{k} = {toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    tables = [f"[{section}]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in table.items())
              for section, table in cfg.items() if isinstance(table, dict)]
    path = Path(path)
    path.write_text("\n".join(plain + tables) + "\n")
    return path
