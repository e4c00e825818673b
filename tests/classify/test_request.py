"""tollgate/classify/request.py: what a classification request may contain."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tollgate.classify.request import Spec, UnprocessableError, parse_definition, parse_ref, parse_request


def refused(data: Any, *, multi: bool = False, batch: bool = False) -> UnprocessableError:
    with pytest.raises(UnprocessableError) as info:
        parse_request(data, multi=multi, batch=batch)
    assert info.value.status == 422 and info.value.code == "VALIDATION_ERROR"
    return info.value


def test_a_minimal_request_gets_the_defaults() -> None:
    req = parse_request({"text": "hi", "labels": ["a", "b"]}, multi=False, batch=False)
    assert req.texts == ["hi"] and req.priority == "standard" and req.cache is True and not req.batch
    assert req.spec == Spec(labels=("a", "b"))


def test_batch_requests_are_priced_as_batch_and_keep_bad_items_apart() -> None:
    req = parse_request({"texts": ["ok", "", 3, "x" * 50_001], "labels": ["a"]}, multi=True, batch=True)
    assert req.priority == "batch" and req.batch
    assert sorted(req.item_errors) == [1, 2, 3]
    assert req.item_errors[1] == "'texts[1]' must not be empty"
    assert req.item_errors[2] == "'texts[2]' must be a string"
    assert req.item_errors[3] == "'texts[3]' is 50001 characters; the limit is 50000"


def test_labels_must_be_unique() -> None:
    err = refused({"text": "x", "labels": ["a", "a"]})
    assert (err.message, err.param) == ("Labels must be unique", "labels")


def test_a_classifier_replaces_labels_and_may_be_pinned() -> None:
    req = parse_request({"text": "x", "classifier": "tickets@v2", "threshold": 0.2}, multi=True, batch=False)
    assert req.spec is None and req.classifier == "tickets@v2" and req.threshold == 0.2
    assert parse_ref("tickets") == ("tickets", None)
    assert parse_ref("tickets@v12") == ("tickets", 12)
    for bad in ("tickets@v0", "tickets@2", "@v1", "has space", 5):
        with pytest.raises(UnprocessableError):
            parse_ref(bad)


def test_files_and_images_replace_text() -> None:
    data = base64.b64encode(b"%PDF-1.4").decode()
    req = parse_request(
        {"file": f"data:application/pdf;base64,{data}", "labels": ["a"]}, multi=False, batch=False
    )
    assert req.file == b"%PDF-1.4" and req.texts == []
    req = parse_request({"image": "https://example.com/a.png", "labels": ["a"]}, multi=False, batch=False)
    assert req.images == ["https://example.com/a.png"]
    assert refused({"image": 3, "labels": ["a"]}).param == "image"


def test_threshold_only_on_tag_and_within_zero_to_one() -> None:
    assert refused({"text": "x", "labels": ["a"], "threshold": 0.5}).param == "threshold"
    assert refused({"text": "x", "labels": ["a"], "threshold": True}, multi=True).param == "threshold"
    assert refused({"text": "x", "labels": ["a"], "threshold": -0.1}, multi=True).param == "threshold"


def test_the_body_must_be_an_object() -> None:
    assert refused(["text"]).param == "body"


def test_a_definition_round_trips_through_json() -> None:
    name, spec = parse_definition(
        {
            "name": "tickets",
            "labels": ["billing", "shipping"],
            "descriptions": {"billing": "money"},
            "examples": {"shipping": ["where is my parcel"]},
            "text_type": "support ticket",
            "mode": "multi",
            "threshold": 0.3,
            "backend": "local",
        }
    )
    assert name == "tickets" and spec.mode == "multi" and spec.backend == "local"
    assert Spec.from_json(spec.to_json()) == spec
