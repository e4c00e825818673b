"""Quality and speed of the local classification backend against plain-embedding baselines, in one run.

    .venv/bin/python bench/classify.py [--draws 3] [--skip-http] [--skip-fit]

Data (``tests/fixtures/classify/public``, provenance and licences in the README there):

- intent sets (``bench/make_intents.py``): BANKING77 (77 labels), CLINC150 (150), HWU64 (64), StackOverflow (20);
  each has a few-shot pool (``split: examples``, from the source's train split) and 1,000 test texts;
- the earlier public samples: SpamAssassin (2 labels), Brown genres (15), ChatterBot topics (11), with
  ``fit`` / ``eval`` halves (few-shot examples are drawn from ``fit``).

``FIT_SETS`` are the only data the calibration constants of ``tollgate/classify/scoring.py`` are fitted on
(HWU64's test texts; the public sets' ``fit`` halves less the drawn examples); every figure in the table is
measured on data never fitted on: the eval sets' test texts and the public sets' ``eval`` halves.

Per set and setting (zero-shot: label names; k examples per label, ``--draws`` draws, mean): accuracy of the
baselines measured in this run (zero-shot: cosine to the embedded label exactly as the request gives it, and to
the label read as words; few-shot: cosine to the examples' centroid) and of Tollgate (``scoring.label_model``,
what the backend runs), Tollgate's ECE (15 bins) and mean confidence. Then speed: texts/s in model batches for
short texts, one text per call, and through HTTP (``POST /v1/classify/batch`` and single ``/v1/classify`` p50 on
a running gateway, cache off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.make_dataset import CHATTERBOT_TOPICS  # noqa: E402
from tollgate.classify import calibration, scoring  # noqa: E402
from tollgate.classify.prompts import label_name, label_prompts  # noqa: E402
from tollgate.local.embedder import Embedder, get_embedder  # noqa: E402

PUBLIC = ROOT / "tests" / "fixtures" / "classify" / "public"
SHOTS = (0, 1, 3, 10)
INTENT_SETS = ("banking77", "clinc150", "hwu64", "stackoverflow20")
FIT_SETS = ("hwu64", "spam_assassin", "brown_genres", "chatterbot_topics")
# per public set, the label each corpus class is sent as and its one-line description (None: name only)
PUBLIC_SETS: dict[str, dict[str, tuple[str, str | None]]] = {
    "spam_assassin": {
        "ham": (
            "ham",
            "ordinary mail the recipient wanted: from people they know, or lists and newsletters they "
            "subscribed to",
        ),
        "spam": ("spam", "unsolicited bulk mail: advertising, get-rich-quick offers, scams"),
    },
    "brown_genres": {
        "adventure": ("adventure", "adventure and western fiction"),
        "belles_lettres": ("belles lettres", "biography, memoirs and essays"),
        "editorial": ("editorial", "press editorials, columns and letters to the editor"),
        "fiction": ("general fiction", "novels and short stories"),
        "government": ("government document", "government documents and reports of foundations and industry"),
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
    "chatterbot_topics": {topic: (topic, None) for topic in CHATTERBOT_TOPICS},
}


@dataclass
class LabelledSet:
    name: str
    labels: list[str]  # as the request sends them
    descriptions: dict[str, str]
    pools: list[np.ndarray]  # per label: embeddings examples are drawn from
    scored: tuple[np.ndarray, np.ndarray]  # (embeddings, label indices) the figures (or the fit) use
    fit_rows: tuple[np.ndarray, np.ndarray] | None  # public sets: fit-half rows scored for the fit


def load(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (PUBLIC / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def labelled_set(emb: Embedder, name: str) -> LabelledSet:
    rows = load(name)
    if name in INTENT_SETS:
        classes = sorted({r["label"] for r in rows})
        sent, desc = classes, {}
        pool_split, scored_split = "examples", "test"
    else:
        spec = PUBLIC_SETS[name]
        classes = sorted(spec)
        sent = [spec[c][0] for c in classes]
        desc = {spec[c][0]: d for c in classes if (d := spec[c][1])}
        pool_split, scored_split = "fit", "eval"
    x = emb.encode([r["text"] for r in rows])
    y = np.array([classes.index(r["label"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    pools = [x[(split == pool_split) & (y == i)] for i in range(len(classes))]
    scored = (x[split == scored_split], y[split == scored_split])
    fit_rows = (x[split == "fit"], y[split == "fit"]) if name not in INTENT_SETS else None
    return LabelledSet(name, sent, desc, pools, scored, fit_rows)


def draw_examples(s: LabelledSet, k: int, draw: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """k examples per label from the pool (at most all but one of a public set's fit rows, so one is left to
    score for the fit), and the indices drawn."""
    rng = np.random.default_rng(draw)
    picks = []
    for pool in s.pools:
        room = len(pool) - (1 if s.fit_rows is not None else 0)
        picks.append(rng.choice(len(pool), size=min(k, room), replace=False))
    return [pool[p] for pool, p in zip(s.pools, picks, strict=True)], picks


def fit_scored(s: LabelledSet, picks: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """What a fit set contributes to the fit: HWU64's test texts; a public set's fit rows not drawn as
    examples."""
    if s.fit_rows is None:
        return s.scored
    x, y = s.fit_rows
    keep = np.ones(len(y), dtype=bool)
    if picks is not None:
        for i, p in enumerate(picks):
            keep[np.flatnonzero(y == i)[p]] = False
    return x[keep], y[keep]


def prompt_vectors(emb: Embedder, s: LabelledSet) -> list[np.ndarray]:
    return [emb.encode(label_prompts(label, s.descriptions.get(label))) for label in s.labels]


@dataclass
class Cell:
    baseline: float
    baseline_words: float
    accuracy: float
    ece: float
    confidence: float
    tag_recall: float
    tag_fpr: float


def evaluate(emb: Embedder, s: LabelledSet, draws: int) -> dict[int, Cell]:
    x, y = s.scored
    prompts = prompt_vectors(emb, s)
    raw = scoring.normalise(emb.encode(s.labels))
    words = scoring.normalise(emb.encode([label_name(label) for label in s.labels]))
    out = {}
    for k in SHOTS:
        cells = []
        for draw in range(1 if k == 0 else draws):
            if k == 0:
                examples: list[np.ndarray | None] = [None] * len(s.labels)
                base = raw
            else:
                drawn, _ = draw_examples(s, k, draw)
                examples = list(drawn)
                base = scoring.normalise(np.stack([e.mean(axis=0) for e in drawn]))
            model = scoring.label_model(prompts, examples)
            p = scoring.single_label(x, model)
            correct = p.argmax(1) == y
            tags = scoring.multi_label(x, model.prototypes) >= 0.5
            truth = np.eye(len(s.labels), dtype=bool)[y]
            cells.append(
                Cell(
                    float(((x @ base.T).argmax(1) == y).mean()),
                    float(((x @ words.T).argmax(1) == y).mean()) if k == 0 else float("nan"),
                    float(correct.mean()),
                    calibration.expected_calibration_error(p.max(1), correct),
                    float(p.max(1).mean()),
                    float((tags & truth).sum() / truth.sum()),
                    float((tags & ~truth).sum() / (~truth).sum()),
                )
            )
        out[k] = Cell(*(float(np.mean([getattr(c, f) for c in cells])) for f in Cell.__dataclass_fields__))
    return out


def fit_constants(emb: Embedder, sets: dict[str, LabelledSet], use: bool) -> list[str]:
    """Refit the temperature pairs on FIT_SETS only (zero-shot, and draw 0 of each k for few-shot); ``use``:
    score the table with them instead of the shipped ones."""
    zero: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    few: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for name in FIT_SETS:
        s = sets[name]
        prompts = prompt_vectors(emb, s)
        x, y = fit_scored(s, None)
        zero[0].append(scoring.label_model(prompts, [None] * len(s.labels)).logits(x))
        zero[1].append(y)
        for k in SHOTS[1:]:
            drawn, picks = draw_examples(s, k, 0)
            x, y = fit_scored(s, picks)
            few[0].append(scoring.label_model(prompts, list(drawn)).logits(x))
            few[1].append(y)
    z = calibration.fit_log_temperature(*zero, (0.0, 0.25), (-0.05, 0.03))
    f = calibration.fit_log_temperature(*few, (0.0, 5.0), (-1.0, 1.0))
    if use:
        scoring.ZERO_SHOT_T, scoring.FEW_SHOT_T = z, f
    return [
        f"temperature refit on {', '.join(FIT_SETS)} (T = a + b ln labels): zero-shot a={z[0]:.4f} "
        f"b={z[1]:.4f} (shipped {scoring.ZERO_SHOT_T}); few-shot a={f[0]:.3f} b={f[1]:.4f} "
        f"(shipped {scoring.FEW_SHOT_T})"
    ]


def speed(emb: Embedder, texts: list[str], model: scoring.LabelModel, n: int) -> list[str]:
    batch = (texts * (n // len(texts) + 1))[:n]
    one = texts[:100]
    single: list[float] = []
    batch_rate = 0.0
    for _ in range(3):  # best of three: the machine is shared
        for text in one:
            t0 = time.perf_counter()
            scoring.single_label(emb.encode([text]), model)
            single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scoring.single_label(emb.encode(batch), model)
        batch_rate = max(batch_rate, n / (time.perf_counter() - t0))
    return [
        f"  model batches ({n} texts): {batch_rate:7.1f} texts/s",
        f"  one text per call: p50 {1000 * statistics.median(single):.1f} ms",
    ]


def http(texts: list[str], labels: list[str], n: int) -> list[str]:
    import httpx

    from tests.support.gateway import Gateway
    from tollgate.simulator import SimServer

    batch = [f"(#{i}) {t}" for i, t in enumerate((texts * (n // len(texts) + 1))[:n])]
    with SimServer() as sim, tempfile.TemporaryDirectory() as tmp, Gateway(Path(tmp), sim.base_url) as gw:
        key = gw.create_key(balance="100")
        with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:
            c.post("/classify", json={"text": "warm up", "labels": labels}).raise_for_status()
            out = []
            for path in ("/classify/batch", "/tag/batch"):
                t0 = time.perf_counter()
                r = c.post(path, json={"texts": batch, "labels": labels, "cache": False})
                took = time.perf_counter() - t0
                r.raise_for_status()
                out.append(f"  POST /v1{path} ({n} texts): {n / took:7.1f} texts/s")
            took_each = []
            for text in batch[:100]:
                t0 = time.perf_counter()
                c.post("/classify", json={"text": text, "labels": labels, "cache": False}).raise_for_status()
                took_each.append(time.perf_counter() - t0)
            out.append(f"  POST /v1/classify one at a time: p50 {1000 * statistics.median(took_each):.1f} ms")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--batch-texts", type=int, default=1000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--fit-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--use-refit", action="store_true", help="score with the constants refit in this run")
    args = parser.parse_args()
    emb = get_embedder()
    t0 = time.perf_counter()
    emb.load()
    print(
        f"model load {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    names = ("clinc150",) if args.speed_only else (*INTENT_SETS, *PUBLIC_SETS)
    sets = {name: labelled_set(emb, name) for name in names}
    if not (args.skip_fit or args.speed_only):
        for line in fit_constants(emb, sets, args.use_refit):
            print(line, flush=True)
        if args.fit_only:
            return
    print(
        "set (labels, role) | setting | baseline: label as sent / as words / centroid | Tollgate accuracy "
        "(gain) | ECE | mean confidence | tag@0.5 recall, false-positive rate"
    )
    for name, s in sets.items() if not args.speed_only else ():
        # hwu64: the rows shown are the ones fitted on; public sets: eval halves (their fit halves were fitted on)
        role = ("fitted" if name in INTENT_SETS else "eval½") if name in FIT_SETS else "eval"
        for k, c in evaluate(emb, s, args.draws).items():
            setting = "zero-shot" if k == 0 else f"{k} ex/label"
            base = f"{c.baseline:.3f} / {c.baseline_words:.3f}" if k == 0 else f"{c.baseline:.3f}"
            print(
                f"{name:18s} ({len(s.labels):3d}, {role:6s}) | {setting:11s} | {base:13s} | "
                f"{c.accuracy:.3f} ({100 * (c.accuracy - c.baseline):+5.1f}) | {c.ece:.3f} | "
                f"{c.confidence:.3f} | {c.tag_recall:.3f}, {c.tag_fpr:.3f}",
                flush=True,
            )
    short = [r["text"] for r in load("clinc150") if r["split"] == "test"]
    clinc = sets["clinc150"]
    print(f"speed, CLINC150 test texts (mean {np.mean([len(t) for t in short]):.0f} chars), 150 labels:")
    zero = scoring.label_model(prompt_vectors(emb, clinc), [None] * len(clinc.labels))
    for line in speed(emb, short, zero, args.batch_texts):
        print(line)
    if not args.skip_http:
        for line in http(short, clinc.labels, args.batch_texts):
            print(line)


if __name__ == "__main__":
    main()
