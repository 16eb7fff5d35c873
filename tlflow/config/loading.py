"""Reading a config: YAML files, `--set a.b=c` overrides, and one-line errors for bad input."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean `x`?)' for the choice closest to a misspelt `word`, '' when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _keys_at(loc: tuple) -> list[str]:
    """The keys a config section at `loc` (the location of an unknown key) accepts, aliases as spelt in YAML."""
    model: Any = PipelineConfig
    parts = list(loc[:-1])
    while parts:
        field = model.model_fields.get(parts[0]) or next(
            (f for f in model.model_fields.values() if f.alias == parts[0]), None)
        if field is None:
            return []
        parts.pop(0)
        model = field.annotation
        while not (isinstance(model, type) and issubclass(model, BaseModel)):
            args = [a for a in get_args(model) if a is not type(None)]
            if get_origin(model) is dict and parts:
                parts.pop(0)  # the key of a dict of sections, e.g. data.derived_columns.<name>
            if not args:
                return []
            model = args[-1]
    return [f.alias or name for name, f in model.model_fields.items()]


def _format_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(str(e["loc"][-1]), _keys_at(e["loc"]))
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
