"""What a config may read: every file or folder it names lies under an allowed root.

A config is run input: with a Prefect deployment, whoever starts a run chooses it. Without this
check any file the worker can read (``/etc/passwd``, another team's model) could be named as data
and echoed into reports. The rules:

* data files (``data.file``/``data.files``/``data.class_files``), the pretraining corpus folders in use and
  ``fairness.eec.file`` must lie under ``paths.data_roots`` (default: the project's ``data/``);
* ``model.base``, when it names an existing local folder, must lie under a data root, a
  ``paths.model_roots`` folder, the pipeline's own cache (``.cache/tlflow``: pretrained encoders,
  converted bases) or the Hugging Face cache; packaged aliases and Hub ids are not paths.
* ``TLFLOW_ALLOWED_ROOTS`` (``os.pathsep``-separated folders), when set in the environment of the
  process that runs the flow (a worker), bounds the roots a config may declare: a config root
  outside all of them is refused, so a run's parameters cannot widen what the worker reads.

Relative paths and roots are taken from the working directory (the project root, where
``tlflow`` runs); both sides are resolved (symlinks followed) before they are compared, so
``data/`` may be a link to a shared folder, while a link inside it to ``/etc`` is refused.
Nothing is opened here: the check runs before any file is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from tlflow import paths
from tlflow.config.schema import ConfigError, PipelineConfig

#: Environment variable of a worker: the folders any configured root must lie in.
ALLOWED_ROOTS_ENV = "TLFLOW_ALLOWED_ROOTS"
#: Longest excerpt of a path echoed in an error.
_SHOWN_CHARS = 120


def _resolved(path: str | Path) -> Path:
    return Path(path).resolve()  # no `~` expansion: the readers do not expand it either


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _show(value: str) -> str:
    return value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 1] + "…"


def _listed(roots: list[str]) -> str:
    return ", ".join(roots) if roots else "none"


def _bounded(field: str, roots: list[str]) -> list[Path]:
    """The configured roots, resolved; ConfigError when `TLFLOW_ALLOWED_ROOTS` is set and one lies outside it."""
    resolved = [_resolved(r) for r in roots]
    bound = [b for b in os.environ.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if b.strip()]
    if bound:
        outer = [_resolved(b) for b in bound]
        for raw, root in zip(roots, resolved):
            if not _under(root, outer):
                raise ConfigError(f"{field}: root '{_show(raw)}' is outside the folders this worker allows "
                                  f"({ALLOWED_ROOTS_ENV}={os.pathsep.join(bound)})")
    return resolved


def confine(field: str, value: str, roots: list[Path], shown_roots: list[str]) -> None:
    """ConfigError (one line: field, path, allowed roots) unless `value` resolves under one of `roots`."""
    if not _under(_resolved(value), roots):
        raise ConfigError(f"{field}: '{_show(value)}' is outside the allowed data roots "
                          f"({_listed(shown_roots)}; add a folder to paths.data_roots to allow it)")


def data_inputs(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """(field, path) of every data file or folder `cfg` reads."""
    out = [("data.file", cfg.data.file)] if cfg.data.file else []
    out += [(f"data.files.{split}", path) for split, path in sorted(cfg.data.files.items())]
    out += [(f"data.class_files.{label}", path) for label, path in sorted(cfg.data.class_files.items())]
    corpus = cfg.pretrain.corpus
    if cfg.pretrain.mode != "none":
        if "wikitext2" in corpus.sources:
            out.append(("pretrain.corpus.wikitext_dir", corpus.wikitext_dir))
        if "gutenberg" in corpus.sources:
            out.append(("pretrain.corpus.gutenberg_dir", corpus.gutenberg_dir))
    if cfg.fairness.eec is not None:
        out.append(("fairness.eec.file", cfg.fairness.eec.file))
    return out


def model_roots(cfg: PipelineConfig) -> list[Path]:
    """Where a local `model.base` folder may lie: data roots, model roots, the pipeline's own cache
    and the Hugging Face cache."""
    from huggingface_hub.constants import HF_HUB_CACHE

    data = _bounded("paths.data_roots", cfg.paths.data_roots)
    models = _bounded("paths.model_roots", cfg.paths.model_roots)
    return [*data, *models, _resolved(paths.CACHE_DIR), _resolved(HF_HUB_CACHE)]


def check_paths(cfg: PipelineConfig) -> None:
    """ConfigError (exit 2) naming the field, the path and the allowed roots for the first data
    file, corpus folder, EEC file or local base-model folder of `cfg` outside its roots."""
    roots = _bounded("paths.data_roots", cfg.paths.data_roots)
    for field, value in data_inputs(cfg):
        confine(field, value, roots, cfg.paths.data_roots)
    base = cfg.model.base
    if Path(base).exists() and not _under(_resolved(base), model_roots(cfg)):
        shown = [*cfg.paths.data_roots, *cfg.paths.model_roots, str(paths.CACHE_DIR), "the Hugging Face cache"]
        raise ConfigError(f"model.base: local folder '{_show(base)}' is outside the allowed model roots "
                          f"({_listed(shown)}; add it to paths.model_roots to allow it)")
