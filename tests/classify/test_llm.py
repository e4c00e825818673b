"""tollgate/classify/llm.py: the constrained chat request and reading label and confidence back."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from tollgate.classify.llm import FALLBACK_TAG_FALSE, FALLBACK_TAG_TRUE, chat_body, read_multi, read_single
from tollgate.classify.request import Spec
from tollgate.errors import UpstreamBadResponseError

SINGLE = Spec(labels=("billing", "shipping"), descriptions={"billing": "money"}, text_type="support ticket")
MULTI = Spec(labels=("billing", "shipping"), mode="multi")


def completion(content: str, tokens: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
    if tokens is not None:
        choice["logprobs"] = {
            "content": [{"token": t, "logprob": lp, "top_logprobs": []} for t, lp in tokens]
        }
    return {"choices": [choice], "usage": {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58}}


def test_the_request_constrains_the_answer_to_the_labels() -> None:
    body = chat_body("sim-small", SINGLE, "charged twice", [])
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["billing", "shipping"]
    assert body["logprobs"] is True and body["temperature"] == 0 and body["model"] == "sim-small"
    assert (
        "support ticket" in body["messages"][0]["content"]
        and "billing: money" in body["messages"][0]["content"]
    )
    assert body["messages"][1] == {"role": "user", "content": "charged twice"}
    multi = chat_body("m", MULTI, "x", ["https://example.com/a.png", "aGVsbG8="])["response_format"]
    assert multi["json_schema"]["schema"]["required"] == ["billing", "shipping"]


def test_images_become_image_parts() -> None:
    content = chat_body("m", SINGLE, "look", ["https://example.com/a.png", "aGVsbG8="])["messages"][1][
        "content"
    ]
    assert content == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}},
    ]


def test_single_label_confidence_comes_from_the_label_tokens() -> None:
    tokens = [('{"', 0.0), ("label", 0.0), ('":"', 0.0), ("bill", -0.2), ("ing", -0.01), ('","', 0.0)]
    tokens += [("confidence", 0.0), ('":', 0.0), ("0.99", -1.0), ("}", 0.0)]
    content = "".join(t for t, _ in tokens)
    assert orjson.loads(content) == {"label": "billing", "confidence": 0.99}
    label, p = read_single(completion(content, tokens), SINGLE)
    assert label == "billing" and math.isclose(p, math.exp(-0.21))


def test_without_logprobs_single_label_falls_back_to_the_stated_confidence() -> None:
    assert read_single(completion('{"label": "shipping", "confidence": 0.7}'), SINGLE) == ("shipping", 0.7)
    assert read_single(completion('{"label": "shipping", "confidence": 7}'), SINGLE) == ("shipping", 1.0)


def test_tags_read_true_and_false_with_their_probabilities() -> None:
    tokens = [('{"billing":', 0.0), ("true", -0.1), (',"shipping":', 0.0), ("false", -0.3), ("}", 0.0)]
    content = "".join(t for t, _ in tokens)
    got = read_multi(completion(content, tokens), MULTI)
    assert math.isclose(got["billing"], math.exp(-0.1))
    assert math.isclose(got["shipping"], 1 - math.exp(-0.3))
    plain = read_multi(completion('{"billing": true, "shipping": false}'), MULTI)
    assert plain == {"billing": FALLBACK_TAG_TRUE, "shipping": FALLBACK_TAG_FALSE}


@pytest.mark.parametrize(
    "content",
    ["not json", "[1]", '{"label": "refund", "confidence": 1}'],
)
def test_answers_outside_the_schema_are_upstream_errors(content: str) -> None:
    with pytest.raises(UpstreamBadResponseError):
        read_single(completion(content), SINGLE)
    with pytest.raises(UpstreamBadResponseError):
        read_multi(completion('{"billing": "yes", "shipping": false}'), MULTI)
