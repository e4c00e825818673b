"""The bundled model through ``POST /v1/classify/batch`` on a public many-label set (BANKING77, 77 intents).

The floors are the figures this test measured when it was written (``MEASURED``), less a margin for the small
differences of ONNX Runtime builds and CPUs; they are not fitted to pass: the calibration constants were
fitted on other sets (``bench/classify.py``: ``FIT_SETS``), and the texts here are BANKING77 test texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.gateway import Gateway
from tollgate.classify.calibration import expected_calibration_error
from tollgate.local.bundled import installed

if not (installed("onnxruntime") and installed("tokenizers")):
    pytest.skip("the [local] extra is not installed", allow_module_level=True)

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "classify" / "public" / "banking77.jsonl"
PER_LABEL = 4  # test texts per label: 308 texts
SHOTS = 3
MEASURED = {"zero-shot": (0.627, 0.083), "3 examples/label": (0.776, 0.054)}  # (accuracy, ECE) when written
MARGIN = 0.04


def sample() -> tuple[list[str], list[str], list[str], dict[str, list[str]]]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    labels = sorted({r["label"] for r in rows})
    texts, truth = [], []
    examples: dict[str, list[str]] = {label: [] for label in labels}
    taken: dict[str, int] = dict.fromkeys(labels, 0)
    for r in rows:
        if r["split"] == "test" and taken[r["label"]] < PER_LABEL:
            texts.append(r["text"])
            truth.append(r["label"])
            taken[r["label"]] += 1
        elif r["split"] == "examples" and len(examples[r["label"]]) < SHOTS:
            examples[r["label"]].append(r["text"])
    return labels, texts, truth, examples


def test_many_label_intents_are_classified_above_the_measured_floor(gateway: Gateway) -> None:
    labels, texts, truth, examples = sample()
    key = gateway.create_key(balance="10")
    got = {}
    with httpx.Client(
        base_url=gateway.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600
    ) as c:
        for setting, extra in (("zero-shot", {}), ("3 examples/label", {"examples": examples})):
            r = c.post("/classify/batch", json={"texts": texts, "labels": labels, "cache": False, **extra})
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            correct = np.array([res["label"] == t for res, t in zip(results, truth, strict=True)])
            conf = np.array([res["confidence"] for res in results])
            got[setting] = (float(correct.mean()), expected_calibration_error(conf, correct))
    for setting, (accuracy, ece) in got.items():
        floor, ece_measured = MEASURED[setting]
        assert accuracy >= floor - MARGIN, (setting, accuracy)
        assert ece <= ece_measured + MARGIN, (setting, ece)
    assert got["3 examples/label"][0] > got["zero-shot"][0] + 0.05, "examples must help"
