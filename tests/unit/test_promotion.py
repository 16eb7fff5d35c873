import pytest

from tlflow.promotion import decide


def test_first_model_becomes_champion():
    d = decide("accuracy", 0.7, None, None)
    assert d.promoted and d.alias == "champion" and d.champion_version is None


def test_better_model_wins():
    d = decide("accuracy", 0.86, 0.84, "3")
    assert d.promoted
    assert d.champion_version == "3"
    assert "+0.0200" in d.reason


@pytest.mark.parametrize("new", [0.84, 0.83])
def test_tie_or_worse_stays_challenger(new):
    d = decide("accuracy", new, 0.84, "3")
    assert d.alias == "challenger"


def test_min_delta_must_be_exceeded():
    assert decide("accuracy", 0.845, 0.84, "1", min_delta=0.01).alias == "challenger"
    assert decide("accuracy", 0.851, 0.84, "1", min_delta=0.01).alias == "champion"
