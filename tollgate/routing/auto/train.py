"""Learn a routing profile from labelled rows, and measure it on held-out rows.

Rows are ``(prompt, model, correct)``: how a model did on a prompt (one row per model tried on a prompt).
Training embeds the distinct prompts, clusters them with spherical k-means (k-means++ seeding from a fixed
seed, so training is deterministic), and scores each model in each cluster by its accuracy there, shrunk
toward its overall accuracy (``prior`` pseudo-observations) so that small clusters do not swing on a few
rows.

Trainer command (JSON lines ``{"prompt": ..., "model": ..., "correct": true}``)::

    python -m tollgate.routing.auto.train rows.jsonl --k 8 --out profile.json [--holdout 0.2 --prices p.json]

It embeds with the bundled sentence-embedding model (``tollgate[local]``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson

from tollgate.routing.auto.profile import Profile, Vectors
from tollgate.routing.auto.select import select

Embed = Callable[[list[str]], Vectors]


@dataclass(frozen=True, slots=True)
class Row:
    prompt: str
    model: str
    correct: bool


def read_rows(path: Path) -> list[Row]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        data = orjson.loads(line)
        if not isinstance(data, dict) or not {"prompt", "model", "correct"} <= set(data):
            raise ValueError(f"{path}:{n}: each line needs prompt, model and correct")
        rows.append(Row(str(data["prompt"]), str(data["model"]), bool(data["correct"])))
    return rows


def _normalise(v: Vectors) -> Vectors:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def kmeans(vectors: Vectors, k: int, *, seed: int = 0, iterations: int = 50) -> Vectors:
    """Spherical k-means on unit rows: centroids (k, D) of norm 1. Deterministic for a given ``seed``."""
    n = vectors.shape[0]
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    for _ in range(1, k):  # k-means++: far points are likelier seeds
        dist = 1 - np.max(vectors @ vectors[chosen].T, axis=1)
        dist = np.maximum(dist, 0) ** 2
        total = float(dist.sum())
        chosen.append(int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n)))
    centroids = vectors[chosen].copy()
    for _ in range(iterations):
        labels = np.argmax(vectors @ centroids.T, axis=1)
        moved = centroids.copy()
        for c in range(k):
            members = vectors[labels == c]
            if len(members):
                moved[c] = members.sum(axis=0)
        moved = _normalise(moved)
        if np.allclose(moved, centroids, atol=1e-6):
            break
        centroids = moved
    return _normalise(centroids)


def fit(
    rows: Sequence[Row], embed: Embed, *, k: int = 8, prior: float = 2.0, seed: int = 0, name: str = "custom"
) -> Profile:
    prompts = sorted({r.prompt for r in rows})
    if not prompts:
        raise ValueError("no training rows")
    index = {p: i for i, p in enumerate(prompts)}
    vectors = _normalise(np.asarray(embed(prompts), dtype=np.float32))
    centroids = kmeans(vectors, k, seed=seed)
    labels = np.argmax(vectors @ centroids.T, axis=1)
    k = centroids.shape[0]
    models = sorted({r.model for r in rows})
    right = {m: np.zeros(k) for m in models}
    seen = {m: np.zeros(k) for m in models}
    for r in rows:
        c = int(labels[index[r.prompt]])
        seen[r.model][c] += 1
        right[r.model][c] += r.correct
    overall = {m: float(right[m].sum() / max(seen[m].sum(), 1)) for m in models}
    scores = {m: [float(v) for v in (right[m] + prior * overall[m]) / (seen[m] + prior)] for m in models}
    counts = [int((labels == c).sum()) for c in range(k)]
    return Profile(name, centroids, scores, overall, counts)


@dataclass(frozen=True, slots=True)
class Report:
    prompts: int
    strongest: str
    quality_retained: float  # router accuracy / strongest model's accuracy
    cost_saved: float  # 1 - router cost / strongest model's cost (per prompt, same tokens assumed)
    router_accuracy: float
    strongest_accuracy: float
    picks: dict[str, int]


def evaluate(
    profile: Profile, rows: Sequence[Row], embed: Embed, prices: dict[str, Decimal], cost_bias: float
) -> Report:
    """Route each held-out prompt among the models labelled on it, against always using the strongest."""
    outcome: dict[str, dict[str, bool]] = {}
    for r in rows:
        outcome.setdefault(r.prompt, {})[r.model] = r.correct
    prompts = sorted(p for p, o in outcome.items() if set(o) >= set(prices))
    if not prompts:
        raise ValueError("no held-out prompt is labelled for every priced model")
    strongest = max(sorted(prices), key=lambda m: profile.overall.get(m, 0.0))
    vectors = _normalise(np.asarray(embed(prompts), dtype=np.float32))
    picks: dict[str, int] = {}
    right = strong_right = 0
    cost = strong_cost = Decimal(0)
    for prompt, vector in zip(prompts, vectors, strict=True):
        chosen = select(profile, vector, prices, cost_bias).model
        picks[chosen] = picks.get(chosen, 0) + 1
        right += outcome[prompt][chosen]
        strong_right += outcome[prompt][strongest]
        cost += prices[chosen]
        strong_cost += prices[strongest]
    n = len(prompts)
    return Report(
        prompts=n,
        strongest=strongest,
        quality_retained=right / strong_right if strong_right else 1.0,
        cost_saved=float(1 - cost / strong_cost) if strong_cost else 0.0,
        router_accuracy=right / n,
        strongest_accuracy=strong_right / n,
        picks=dict(sorted(picks.items())),
    )


def split(rows: Sequence[Row], holdout: float, seed: int = 0) -> tuple[list[Row], list[Row]]:
    """Split by prompt (all rows of a prompt land on the same side), deterministically."""
    prompts = sorted({r.prompt for r in rows})
    rng = np.random.default_rng(seed)
    held = {prompts[i] for i in rng.permutation(len(prompts))[: int(len(prompts) * holdout)]}
    return [r for r in rows if r.prompt not in held], [r for r in rows if r.prompt in held]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate.routing.auto.train", description=__doc__)
    parser.add_argument("rows", type=Path, help="JSON lines: prompt, model, correct")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.0, help="share of prompts kept out to evaluate")
    parser.add_argument("--prices", type=Path, help='JSON {"model": "price per token"} for the evaluation')
    parser.add_argument("--cost-bias", type=float, default=0.5)
    args = parser.parse_args(argv)

    from tollgate.local.embedder import MODEL_NAME, get_embedder

    embedder = get_embedder()
    rows = read_rows(args.rows)
    train_rows, held = split(rows, args.holdout, args.seed) if args.holdout > 0 else (rows, [])
    profile = fit(train_rows, embedder.encode, k=args.k, seed=args.seed, name=MODEL_NAME)
    profile.save(args.out)
    sys.stdout.write(f"profile: {profile.k} clusters, models {', '.join(profile.models)} -> {args.out}\n")
    if held and args.prices:
        prices = {m: Decimal(str(p)) for m, p in orjson.loads(args.prices.read_bytes()).items()}
        report = evaluate(profile, held, embedder.encode, prices, args.cost_bias)
        sys.stdout.write(f"held-out: {report}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
