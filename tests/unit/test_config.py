from pathlib import Path

import pytest

from tlflow.config import ConfigError, PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_defaults_are_the_sst2_demo():
    cfg = load_config(None)
    assert cfg.name == "sst2"
    assert cfg.data.files["train"] == "data/sst2/train.tsv"
    assert cfg.model.base == "minilm-l6"


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(PipelineConfig)


def test_set_overrides_one_field_and_keeps_the_rest():
    cfg = load_config(None, ["data.max_train_rows=500", "finetune.learning_rate=3e-5", "name=x"])
    assert cfg.data.max_train_rows == 500
    assert cfg.finetune.learning_rate == pytest.approx(3e-5)
    assert cfg.data.label_names == ["negative", "positive"]
    assert cfg.name == "x"


def test_hash_changes_with_content_only():
    a, b = load_config(None), load_config(None)
    assert a.hash() == b.hash()
    assert load_config(None, ["finetune.seed=1"]).hash() != a.hash()


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["finetune.batch_size=0"], "finetune.batch_size"),
        (["finetune.bogus=1"], "finetune.bogus"),
        (["data.split.train=0.9"], "sum to 1"),
        (["task.primary_metric=bleu"], "primary_metric 'bleu' is not a metric of text-classification"),
        (["nokey"], "key=value"),
    ],
)
def test_bad_values_give_one_line_errors(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_file_and_files_are_exclusive():
    with pytest.raises(ConfigError, match="either"):
        load_config(None, ["data.file=data/ag_news/test.csv"])


def test_flat_params_are_strings():
    flat = load_config(None).flat()
    assert flat["finetune.batch_size"] == "32"
    assert flat["data.files.train"] == "data/sst2/train.tsv"
    assert all(isinstance(v, str) for v in flat.values())


@pytest.mark.needs_data
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates_and_its_files_exist(path):
    assert CONFIGS, "configs/ is empty"
    cfg = load_config(path)
    assert cfg.name == path.stem
    for file in cfg.data.paths():
        assert (REPO / file).is_file(), f"{path.name}: {file} does not exist"
