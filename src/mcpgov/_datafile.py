"""Reading a configuration file that is YAML, or JSON when its name ends in ``.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mcpgov._errors import ConfigurationError

__all__ = ["read_data_file"]


def read_data_file(path: Path, what: str) -> Any:
    """The data in ``path`` (JSON for a ``.json`` name, YAML otherwise); ``what`` names the file in errors.

    Raises:
        ConfigurationError: the file cannot be read, is not UTF-8, or does not parse (with the line
            where the YAML parser knows it).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{what} {path} cannot be read ({type(exc).__name__})") from exc
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigurationError(
            f"{what} {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}{where}"
        ) from exc
