"""The ASGI layer of `tlflow serve` (pure functions): which request bodies it refuses for an
unknown param, and how it shortens MLflow's error messages."""

import json

import pytest

from tlflow.serving.http_server import short_error, unknown_params_message

pytestmark = [pytest.mark.unit]

KNOWN = ["max_new_tokens", "num_beams"]


def _body(payload) -> bytes:
    return json.dumps(payload).encode()


def test_unknown_params_are_refused_by_name():
    records = {"dataframe_records": [{"prompt": "hi"}]}
    assert unknown_params_message(_body({**records, "params": {"max_new_tokens": 3}}), KNOWN) is None
    assert unknown_params_message(_body({**records, "params": {"num_beams": 2, "beams": 2}}), KNOWN) == (
        "unknown parameter 'beams' (this model takes one of: max_new_tokens, num_beams)")
    assert unknown_params_message(_body({**records, "params": {"x": 1}}), []) == (
        "unknown parameter 'x' (this model takes none)")
    # unified LLM format: top-level keys are params or input columns
    assert unknown_params_message(_body({"prompt": "hi", "max_new_tokens": 3}), KNOWN, ["prompt"]) is None
    assert "'beams'" in unknown_params_message(_body({"prompt": "hi", "beams": 3}), KNOWN, ["prompt"])
    # left to MLflow, which answers 400 itself
    for body in (b"{not json", _body([1, 2]), _body({**records, "params": [1]}), _body(records)):
        assert unknown_params_message(body, KNOWN) is None


def test_errors_are_cut_to_their_reason_on_one_line():
    def shortened(message: str) -> str:
        return json.loads(short_error(_body({"error_code": "INVALID_PARAMETER_VALUE", "message": message})))["message"]

    assert shortened("Failed to predict data '  prompt\n0   '. \nError: row 0: field 'prompt' is blank") == (
        "row 0: field 'prompt' is blank")
    assert shortened("Failed to predict data 'x'. \nError: Failed to enforce schema of data 'x\ny' with schema "
                     "'s'. Error: Model is missing inputs ['prompt'].") == "Model is missing inputs ['prompt']."
    assert shortened("Invalid input. Error: 'JSONDecodeError()'\nInput: \n{bad") == "Invalid input. Error: 'JSONDecodeError()'"
    assert short_error(b"not json") == b"not json"
