"""Task types on a real tokenizer and tiny models: features, request checks, scoring by label name."""

import pandas as pd
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from tlflow.modeling.models import load_tokenizer
from tlflow.task_types.base import RequestError, TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.task_types.token_classification import repair_iob2

pytestmark = [pytest.mark.unit]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm-l6")


def test_pairs_are_segment_a_and_b(tokenizer):
    split = Dataset.from_dict({"text": ["a cat"], "text_pair": ["the dog"], "label": ["yes"]})
    features = get_task_type("sentence-pair").train_features(
        split, ["no", "yes"], tokenizer, TaskSettings("sentence-pair", max_length=16)
    )
    ids = features["input_ids"][0]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "a", "cat", "[SEP]", "the", "dog", "[SEP]"]
    assert features["token_type_ids"][0] == [0, 0, 0, 0, 1, 1, 1]
    assert features["labels"] == [1]


def test_entity_features_label_first_subwords(tokenizer):
    split = Dataset.from_dict({"tokens": [["Johanson", "lives"]], "tags": [["B-PER", "O"]]})
    features = get_task_type("token-classification").train_features(
        split, ["O", "B-PER", "I-PER"], tokenizer, TaskSettings("token-classification", max_length=16)
    )
    # [CLS] johan ##son lives [SEP]
    assert features["labels"] == [[-100, 1, -100, 0, -100]]


def test_scoring_compares_labels_by_name(tokenizer):
    """A model whose label ids are in another order (like an older champion) is scored fairly."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=2, id2label={0: "pos", 1: "neg"})
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # always predicts id 1, i.e. "neg"
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    split = Dataset.from_dict({"text": ["good", "bad", "awful"], "label": ["pos", "neg", "neg"]})
    evaluation = get_task_type("text-classification").evaluate(
        model, tokenizer, split, ["neg", "pos"], TaskSettings("text-classification", max_length=8), n_mistakes=5
    )
    assert evaluation.metrics["accuracy"] == pytest.approx(2 / 3)
    assert evaluation.mistakes == [{"text": "good", "true": "pos", "predicted": "neg",
                                    "confidence": evaluation.mistakes[0]["confidence"]}]
    assert evaluation.confusion.tolist() == [[2, 0], [1, 0]]


@pytest.mark.parametrize(("frame", "message"), [
    (pd.DataFrame({"question": ["q"]}), "missing field 'context'"),
    (pd.DataFrame({"question": ["q"], "context": [""]}), "row 0: field 'context' must be a non-empty string"),
    (pd.DataFrame({"question": [3], "context": ["c"]}), "row 0: field 'question' must be a non-empty string, got int"),
    (pd.DataFrame({"question": [], "context": []}), "no requests"),
])
def test_bad_requests_name_the_field(frame, message):
    with pytest.raises(RequestError, match=message):
        get_task_type("question-answering").check_requests(frame)


def test_predicted_tags_are_read_like_conlleval():
    assert repair_iob2(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC"]) == [
        "O", "B-PER", "I-PER", "B-LOC", "B-LOC", "I-LOC"
    ]


def test_unknown_task_type_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: text-classification, sentence-pair"):
        get_task_type("translation")
