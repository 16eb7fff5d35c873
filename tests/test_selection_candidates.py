"""A `<name>-encoder@<alias>` candidate: an encoder registered the way the pretraining stage registers
it (`tasks.pretrain`: fill-mask model, alias `latest-pretrained`) becomes a Hugging Face folder that
`AutoModel` and `AutoTokenizer` load, downloaded once; an unknown alias or model is one line."""

import shutil
from pathlib import Path

import mlflow
import pytest
from transformers import AutoModel, AutoTokenizer

from tasks.pretrain import _register_encoder
from tlflow.config import ConfigError
from tlflow.modeling.models import load_tokenizer
from tlflow.pretraining.model import build_scratch_model, save_encoder
from tlflow.registry import tracking
from tlflow.selection.candidates import ENCODERS_DIR, is_registered, resolve_candidate

pytestmark = [pytest.mark.integration]


def _register_tiny_encoder(project: Path, tiny_config) -> tuple[str, object]:
    """A scratch BERT of one layer (hidden 16) registered as `enc-encoder` v1 @latest-pretrained."""
    cfg = tiny_config(**{"name": "enc", "pretrain.mode": "scratch", "pretrain.num_layers": "1",
                         "pretrain.hidden_size": "16", "pretrain.num_heads": "2", "pretrain.intermediate_size": "32",
                         "pretrain.max_position_embeddings": "64", "pretrain.max_seq_length": "64"})
    tokenizer = load_tokenizer("minilm-l6")
    encoder_dir = save_encoder(build_scratch_model(cfg.pretrain, tokenizer), tokenizer, project / "encoder")
    tracking.configure()
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("enc")):
        version = _register_encoder(cfg, encoder_dir, tokenizer, {"perplexity": 9.0}, {"data_md5": "0" * 32})
    return version, tokenizer


def test_registered_encoder_is_downloaded_once_and_loads(project, tiny_config):
    version, tokenizer = _register_tiny_encoder(project, tiny_config)
    candidate = "enc-encoder@latest-pretrained"
    assert is_registered(candidate) and not is_registered("minilm-l6")
    assert resolve_candidate("minilm-l6") == "minilm-l6"  # packaged aliases and folders stay as they are

    folder = resolve_candidate(candidate)
    assert Path(folder) == ENCODERS_DIR / f"enc-encoder-v{version}"
    model = AutoModel.from_pretrained(folder)
    assert (model.config.model_type, model.config.hidden_size, model.config.num_hidden_layers) == ("bert", 16, 1)
    loaded = AutoTokenizer.from_pretrained(folder)
    assert loaded.is_fast and loaded("a good film")["input_ids"] == tokenizer("a good film")["input_ids"]

    shutil.rmtree(tracking.artifact_root())  # nothing left to download: the second call must reuse the folder
    assert resolve_candidate(candidate) == folder
    assert AutoModel.from_pretrained(folder).config.hidden_size == 16

    for unknown in ("enc-encoder@no-such-alias", "nobody-encoder@latest-pretrained"):
        with pytest.raises(ConfigError, match=f"^select.candidates: '{unknown}': ") as err:
            resolve_candidate(unknown)
        assert "\n" not in str(err.value)
