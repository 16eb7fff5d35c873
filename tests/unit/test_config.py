from pathlib import Path

import pytest

from tlflow.config import ConfigError, PipelineConfig, load_config, parse_config
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config

pytestmark = [pytest.mark.unit]

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
        (["nokey"], "key=value"),
    ],
)
def test_bad_values_give_one_line_errors(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["task.primary_metric=bleu"], "primary_metric 'bleu' is not a metric of text-classification"),
        (["task.type=translation"], "unknown task type 'translation' (known: text-classification, sentence-pair"),
        (["task.doc_stride=64"], "task.doc_stride: Extra inputs are not permitted (text-classification options: none)"),
        (["task.type=question-answering", "task.doc_stride=2"], "task.doc_stride: Input should be greater than or equal to 8"),
        (["task.type=question-answering", "task.primary_metric=accuracy"], "one of: f1, exact_match"),
    ],
)
def test_task_section_is_checked_by_its_task_type(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        check_config(load_config(None, overrides))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_task_options_and_defaults_come_from_the_task_type():
    cfg = check_config(load_config(None))
    assert (cfg.task.type, cfg.task.primary_metric) == ("text-classification", "accuracy")
    assert cfg.task.model_extra == {}
    qa = check_config(load_config(None, ["task.type=question-answering", "task.doc_stride=64"]))
    assert qa.task.primary_metric == "f1"
    assert (qa.task.doc_stride, qa.task.max_answer_length, qa.task.n_best_size) == (64, 30, 20)
    settings = TaskSettings.from_config(qa)
    assert (settings.task, settings.doc_stride, settings.max_answer_length) == ("question-answering", 64, 30)
    ner = check_config(load_config(None, ["task.type=token-classification", "task.label_all_subwords=true"]))
    assert TaskSettings.from_config(ner).label_all_subwords is True
    assert check_config(qa) is qa and qa.task.doc_stride == 64  # idempotent


def test_a_task_section_of_the_earlier_layout_still_loads():
    legacy = {"doc_stride": 128, "max_answer_length": 30, "n_best_size": 20, "label_all_subwords": False}
    cfg = check_config(parse_config({"task": {"type": "sentence-pair", **legacy}}))
    assert TaskSettings.from_config(cfg).task == "sentence-pair"


def test_legacy_task_json_still_loads():
    path = REPO / "tests/assets/legacy_task_model/artifacts/task.json"
    settings = TaskSettings.load(path)
    assert settings.task and settings.max_length > 0


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
@pytest.mark.integration
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates_and_its_files_exist(path):
    assert CONFIGS, "configs/ is empty"
    cfg = check_config(load_config(path))
    assert cfg.name == path.stem
    for file in cfg.data.paths():
        assert (REPO / file).is_file(), f"{path.name}: {file} does not exist"
