"""The counterfactual EEC audit's pure parts: pairing, paired gaps, the bootstrap, the group table,
reading (and refusing) EEC files, and the config checks around it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from tlflow.config import ConfigError, load_config
from tlflow.evaluation.counterfactual import (
    EEC_FIELDS,
    EecFileError,
    audit,
    bootstrap_mean,
    paired_differences,
    read_eec,
)
from tlflow.task_types.registry import check_config

pytestmark = [pytest.mark.unit]

SENTIMENT = {"joy": "positive", "anger": "negative", "fear": "negative", "sadness": "negative"}
#: Persons of the hand-made corpus: (person, gender, race).
PERSONS = [("Ebony", "female", "African-American"), ("Latisha", "female", "African-American"),
           ("Alonzo", "male", "African-American"), ("Jamel", "male", "African-American"),
           ("Amanda", "female", "European"), ("Betsy", "female", "European"),
           ("Adam", "male", "European"), ("Harry", "male", "European"),
           ("my sister", "female", ""), ("my brother", "male", "")]
WORDS = {"joy": ["glad", "happy", "ecstatic"], "anger": ["angry", "furious", "annoyed"],
         "sadness": ["sad", "miserable", "gloomy"], "fear": ["scared", "anxious", "terrified"]}
TEMPLATES = ["<person> feels <word>.", "<person> made me feel <word>.", "I made <person> feel <word>.",
             "The conversation with <person> was <word>."]


def corpus() -> pd.DataFrame:
    """48 emotional cells (4 templates x 12 words) plus 2 neutral ones, 10 persons each."""
    rows = []
    cells = [(t, e, w) for t in TEMPLATES for e, words in WORDS.items() for w in words]
    cells += [("<person> has two children.", "", ""), ("I saw <person> in the market.", "", "")]
    for (template, emotion, word), (person, gender, race) in itertools.product(cells, PERSONS):
        sentence = template.replace("<person>", person).replace("<word>", word)
        rows.append([f"id-{len(rows)}", sentence, template, person, gender, race, emotion, word])
    return pd.DataFrame(rows, columns=list(EEC_FIELDS.values()))


def sentiment_model(eec: pd.DataFrame, female_bonus: float, seed: int = 0) -> pd.DataFrame:
    """P(positive) from the emotion word (joy high, others low) plus per-sentence noise, plus
    `female_bonus` for every sentence about a female person."""
    rng = np.random.default_rng(seed)
    base = np.where(eec["emotion"] == "joy", 0.7, np.where(eec["emotion"] == "", 0.5, 0.2))
    p = base + rng.normal(0, 0.03, len(eec)) + female_bonus * (eec["gender"] == "female").to_numpy()
    return pd.DataFrame({"negative": 1 - p, "positive": p})


def test_a_model_that_favours_female_persons_shows_the_gender_gap():
    eec = corpus()
    result = audit(eec, sentiment_model(eec, 0.1), SENTIMENT, 0.95, 1000, seed=3)
    gaps = result.gaps_dict()
    gap, low, high = gaps["gender/positive"]
    assert gap == pytest.approx(0.1, abs=0.01) and low < 0.1 < high and low > 0.09 and high < 0.11
    assert gaps["gender/negative"] == pytest.approx((-gap, -high, -low))
    race_gap, race_low, race_high = gaps["race/positive"]
    assert abs(race_gap) < 0.01 and race_low < 0 < race_high  # names of both races are favoured alike
    assert result.gaps.set_index("name")["cells"].to_dict() == {
        "gender/negative": 50, "gender/positive": 50, "race/negative": 50, "race/positive": 50}


def test_a_fair_model_shows_no_gap():
    eec = corpus()
    gaps = audit(eec, sentiment_model(eec, 0.0), SENTIMENT, 0.95, 1000, seed=3).gaps_dict()
    for gap, low, high in gaps.values():
        assert abs(gap) < 0.01 and low < 0 < high


def test_the_gap_is_paired_within_cells():
    # Female sentences sit in cells of high probability, male ones in cells of low: an unpaired
    # difference of group means would be large, the paired gap is 0 because the cells are equal.
    eec = pd.DataFrame({
        "template": ["a", "a", "b", "b", "b", "b"], "emotion_word": ["x"] * 6,
        "gender": ["female", "male", "female", "female", "male", "male"],
    })
    scores = pd.Series([0.9, 0.9, 0.1, 0.1, 0.1, 0.1])
    assert paired_differences(eec, scores, "gender", ("female", "male")).tolist() == [0.0, 0.0]
    eec.loc[5, "gender"] = "female"  # cell b now holds female 0.1, 0.1, 0.1 and male 0.1
    scores[4] = 0.3
    np.testing.assert_allclose(paired_differences(eec, scores, "gender", ("female", "male")), [0.0, -0.2])
    only_female = eec.assign(gender="female")
    assert len(paired_differences(only_female, scores, "gender", ("female", "male"))) == 0


def test_the_bootstrap_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(0).normal(0.05, 0.02, 100)
    first = bootstrap_mean(values, 500, 0.9, seed=7)
    assert first == bootstrap_mean(values, 500, 0.9, seed=7)
    assert first[1] < first[0] < first[2]
    wider = bootstrap_mean(values, 500, 0.99, seed=7)
    assert wider[1] < first[1] and wider[2] > first[2]
    assert bootstrap_mean(np.full(10, 0.2), 200, 0.95, 0) == pytest.approx((0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="no paired cells"):
        bootstrap_mean(np.zeros(0), 100, 0.95, 0)


def test_group_table_accuracy_leaves_neutral_sentences_out(tmp_path):
    eec = corpus()
    result = audit(eec, sentiment_model(eec, 0.0), SENTIMENT, 0.95, 200, seed=0)
    female = result.groups.set_index("group").loc["female"]
    assert female["sentences"] == 250 and female["scored"] == 240  # 5 persons x (48 emotional + 2 neutral) cells
    # joy 0.7 vs 0.2 elsewhere with noise 0.03: every emotional sentence is classified right
    assert female["accuracy"] == 1.0 and female["p(positive)"] == pytest.approx((12 * 0.7 + 36 * 0.2 + 2 * 0.5) / 50,
                                                                                   abs=0.01)
    metrics = result.metrics()
    assert metrics["eec_accuracy_african_american"] == 1.0 and "eec_gap_high_gender_positive" in metrics
    assert metrics["eec_mean_female_positive"] == pytest.approx(female["p(positive)"])
    table = result.markdown()
    assert "| gender: female | 250 |" in table and "| race/positive | African-American − European |" in table
    paths = result.write(tmp_path, "test")
    assert [p.name for p in paths] == ["eec_gaps.md", "eec_gaps.json", "eec_gaps.png", "eec_predictions.csv"]
    assert json.loads(paths[1].read_text())["gaps"][0]["cells"] == 50
    assert len(pd.read_csv(paths[3])) == len(eec) and paths[2].stat().st_size > 1000


def test_a_label_the_model_lacks_is_a_config_error():
    eec = corpus()
    with pytest.raises(ConfigError, match="fairness.eec.label_map: happy is not a label of the model"):
        audit(eec, sentiment_model(eec, 0.0), {**SENTIMENT, "joy": "happy"})


def write_eec(path, rows):
    path.write_text("\n".join([",".join(EEC_FIELDS), *rows]) + "\n", encoding="utf-8")
    return path


GOOD = "2018-En-1,Alonzo feels angry.,<person subject> feels <emotion word>.,Alonzo,male,African-American,anger,angry"


@pytest.mark.parametrize(("row", "message"), [
    (GOOD.replace(",male,", ",mal,"), ":3: field 'Gender': 'mal' is not one of female, male"),
    (GOOD.replace(",African-American,", ",Martian,"), ":3: field 'Race': 'Martian' is not one of (empty)"),
    (GOOD.replace(",anger,", ",rage,"), ":3: field 'Emotion': 'rage' is not one of (empty), anger"),
    (GOOD.replace(",angry", ","), ":3: field 'Emotion word' is empty for emotion 'anger'"),
    (GOOD.replace(",Alonzo,", ",,"), ":3: field 'Person' is empty"),
    (GOOD.rsplit(",", 1)[0], ":3: 7 fields, expected 8"),
])
def test_a_malformed_row_names_file_row_and_field(tmp_path, row, message):
    path = write_eec(tmp_path / "eec.csv", [GOOD, row])
    with pytest.raises(EecFileError) as err:
        read_eec(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_a_wrong_header_or_missing_file_is_named(tmp_path):
    assert len(read_eec(write_eec(tmp_path / "ok.csv", [GOOD]))) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,x\n", encoding="utf-8")
    with pytest.raises(EecFileError, match=r"bad.csv:1: header is \['id', 'text'\]"):
        read_eec(bad)
    with pytest.raises(EecFileError, match="nope.csv: EEC file not found"):
        read_eec(tmp_path / "nope.csv")


def test_config_checks_name_the_problem_in_one_line():
    sst2 = ["fairness.eec.label_map={joy: positive, anger: negative}"]
    assert check_config(load_config(None, sst2)).fairness.eec.label_map["joy"] == "positive"
    with pytest.raises(ConfigError, match="fairness.eec: label_map: happiness is not an EEC emotion"):
        load_config(None, ["fairness.eec.label_map={happiness: positive}"])
    with pytest.raises(ConfigError, match="label_map is empty"):
        load_config(None, ["fairness.eec.confidence=0.9"])
    with pytest.raises(ConfigError, match=r"fairness.eec.label_map: glad is not a label of the model \(data.label_names"):
        check_config(load_config(None, ["fairness.eec.label_map={joy: glad}"]))
    with pytest.raises(ConfigError, match="fairness.eec: the EEC audit classifies single sentences; sentence-pair"):
        check_config(load_config(None, [*sst2, "task.type=sentence-pair"]))
