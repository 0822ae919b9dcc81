"""Policy a committee tunes, read from ``rules/*.toml``.

A deployment's rules directory (``[paths] rules``) overrides shipped files of the
same name, key by key within each table, so a committee changes one number without
copying the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailflow import tomlfile
from mailflow.config import Config, ConfigError
from mailflow.resources import builtin


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomlfile.read(path)
    except tomlfile.TOMLError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load(cfg: Config) -> dict[str, Any]:
    """All rules, as ``{file stem: table}``."""
    rules: dict[str, Any] = {}
    dirs = [builtin("rules")]
    if cfg.paths.rules:
        dirs.append(cfg.resolve(cfg.paths.rules))
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigError(f"{cfg.source}: paths.rules: {directory} is not a directory")
        for path in sorted(directory.glob("*.toml")):
            rules[path.stem] = _merge(rules.get(path.stem, {}), _read(path))
    return rules
