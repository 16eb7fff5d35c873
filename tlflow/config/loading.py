"""Reading a config: YAML files, `--set a.b=c` overrides, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tlflow.config.schema import ConfigError, PipelineConfig


def _set_dotted(tree: dict[str, Any], dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw) if raw != "" else ""


def _format_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)  # a whole-tree check names its keys itself
    return f"invalid config {source}: " + "; ".join(parts)


def parse_config(tree: dict[str, Any], source: str = "<dict>") -> PipelineConfig:
    """Validate a config tree; raise ConfigError with a one-line message on failure."""
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config (or the defaults when path is None) and apply ``key=value`` overrides."""
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if path.is_dir():
            raise ConfigError(f"config {path} is a directory, not a YAML file")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise ConfigError(f"config {path} is not UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start} "
                              f"(line {line}); save it as UTF-8") from None
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config {path} must be a mapping at the top level")
    if overrides:
        # Overrides replace only the named key: apply them to the fully resolved tree so that
        # `--set data.max_train_rows=500` keeps the rest of the (default) dataset section.
        tree = parse_config(tree, source).to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set expects key=value, got '{item}'")
            _set_dotted(tree, key.strip(), raw)
    return parse_config(tree, source)
