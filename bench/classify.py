"""Quality and speed of the local classification backend (all-MiniLM-L6-v2, zero-shot).

    .venv/bin/python bench/classify.py [--batch-texts 1000] [--skip-http]

Data: the hand-written labelled sets in ``tests/fixtures/classify`` (news topics, support tickets; see the README
there). The calibration constants are re-fitted on the ``fit`` half and compared with the ones the code ships;
accuracy and calibration are reported on the held-out ``eval`` half, zero-shot (label names and ``text_type``
only) and with three examples per label taken from the ``fit`` half. Speed: texts/second one text per call,
in model batches, and through HTTP (``POST /v1/classify/batch`` on a running gateway, cache off).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tollgate.classify import calibration, scoring  # noqa: E402
from tollgate.classify.prompts import label_prompts  # noqa: E402
from tollgate.local.embedder import Embedder, get_embedder  # noqa: E402

DATA = ROOT / "tests" / "fixtures" / "classify"
TASKS = {"topics": "news article", "support": "support ticket"}


def load(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def label_vectors(emb: Embedder, labels: list[str], text_type: str, examples: dict[str, list[str]]) -> np.ndarray:
    prompts = [emb.encode(label_prompts(label, None, text_type)) for label in labels]
    ex = [emb.encode(examples[label]) if examples.get(label) else None for label in labels]
    return scoring.label_matrix(prompts, ex)


def quality(emb: Embedder) -> list[str]:
    lines = []
    fit_cos, fit_y = [], []
    evals = {}
    for name, text_type in TASKS.items():
        rows = load(name)
        labels = sorted({r["label"] for r in rows})
        x = emb.encode([r["text"] for r in rows])
        y = np.array([labels.index(r["label"]) for r in rows])
        fit = np.array([r["split"] == "fit" for r in rows])
        zero = label_vectors(emb, labels, text_type, {})
        examples = {lab: [r["text"] for r in rows if r["label"] == lab and r["split"] == "fit"][:3] for lab in labels}
        shot = label_vectors(emb, labels, text_type, examples)
        fit_cos.append(x[fit] @ zero.T)
        fit_y.append(y[fit])
        evals[name] = (x[~fit], y[~fit], zero, shot)
    t = calibration.fit_temperature(fit_cos, fit_y)
    a, b = calibration.fit_platt(fit_cos, fit_y)
    lines.append(f"fitted on the fit half: T={t:.3f} (shipped {scoring.TEMPERATURE}), "
                 f"Platt A={a:.1f} B={b:.1f} (shipped {scoring.PLATT_A}, {scoring.PLATT_B})")
    for name, (x, y, zero, shot) in evals.items():
        for kind, labels in (("zero-shot", zero), ("3 examples/label", shot)):
            p = scoring.single_label(x, labels)
            pred = p.argmax(1)
            conf = p.max(1)
            correct = pred == y
            ece = calibration.expected_calibration_error(conf, correct)
            tags = scoring.multi_label(x, labels) >= 0.5
            truth = np.eye(labels.shape[0], dtype=bool)[y]
            recall = (tags & truth).sum() / truth.sum()
            false_pos = (tags & ~truth).sum() / (~truth).sum()
            lines.append(
                f"{name:8s} {kind:17s} n={len(y):3d}  accuracy {correct.mean():.3f}  mean confidence "
                f"{conf.mean():.3f}  ECE {ece:.3f}  | tag@0.5 recall {recall:.3f} false-positive rate {false_pos:.3f}"
            )
    return lines


def speed(emb: Embedder, n: int) -> list[str]:
    texts = [r["text"] for name in TASKS for r in load(name)]
    batch = (texts * (n // len(texts) + 1))[:n]
    labels = label_vectors(emb, sorted({r["label"] for r in load("support")}), "support ticket", {})
    one = texts[:50]
    single_rate = batch_rate = 0.0
    for _ in range(3):  # best of three: the machine is shared
        t0 = time.perf_counter()
        for text in one:
            scoring.single_label(emb.encode([text]), labels)
        single_rate = max(single_rate, len(one) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        scoring.single_label(emb.encode(batch), labels)
        batch_rate = max(batch_rate, n / (time.perf_counter() - t0))
    return [
        f"one text per call: {single_rate:7.1f} texts/s",
        f"model batches    : {batch_rate:7.1f} texts/s ({n} texts, batch size 32)",
    ]


def http(n: int) -> list[str]:
    import httpx

    from tests.support.gateway import Gateway
    from tollgate.simulator import SimServer

    texts = [r["text"] for name in TASKS for r in load(name)]
    batch = [f"{t} (#{i})" for i, t in enumerate((texts * (n // len(texts) + 1))[:n])]
    labels = sorted({r["label"] for r in load("support")})
    with SimServer() as sim, tempfile.TemporaryDirectory() as tmp, Gateway(Path(tmp), sim.base_url) as gw:
        key = gw.create_key(balance="100")
        with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
            c.post("/classify", json={"text": "warm up", "labels": labels})
            out = []
            for path in ("/classify/batch", "/tag/batch"):
                t0 = time.perf_counter()
                r = c.post(path, json={"texts": batch, "labels": labels, "text_type": "support ticket", "cache": False})
                took = time.perf_counter() - t0
                r.raise_for_status()
                out.append(f"POST /v1{path} ({n} texts): {took:6.2f} s = {n / took:7.1f} texts/s")
            t0 = time.perf_counter()
            for text in batch[:50]:
                c.post("/classify", json={"text": text, "labels": labels, "cache": False}).raise_for_status()
            out.append(f"POST /v1/classify one at a time: {50 / (time.perf_counter() - t0):7.1f} texts/s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-texts", type=int, default=1000)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    emb = get_embedder()
    t0 = time.perf_counter()
    emb.load()
    load = os.getloadavg()[0]
    print(f"model load: {time.perf_counter() - t0:.1f} s; load average {load:.1f} on {os.cpu_count()} cores")
    for line in quality(emb):
        print(line)
    for line in speed(emb, args.batch_texts):
        print(line)
    if not args.skip_http:
        for line in http(args.batch_texts):
            print(line)


if __name__ == "__main__":
    main()
