"""The automatic router on a synthetic labelled set: four topics, four models with different strengths and
prices. A bag-of-words embedder stands in for the sentence-embedding model (fast and deterministic)."""

from __future__ import annotations

import zlib
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from tollgate.routing.auto.profile import Profile, Vectors
from tollgate.routing.auto.select import select
from tollgate.routing.auto.train import Row, evaluate, fit, kmeans, main, read_rows, split

TOPICS = {
    "code": "python function bug compile class loop javascript refactor recursion api",
    "math": "integral solve equation prime derivative probability matrix proof limit",
    "chat": "hello weather favourite movie recommend weekend holiday dinner friend",
    "translate": "translate french spanish german sentence phrase italian japanese word",
}
FILLER = "please can you the a of and me this".split()
ACCURACY = {
    "strong": {"code": 0.92, "math": 0.92, "chat": 0.92, "translate": 0.92},
    "coder": {"code": 0.9, "math": 0.4, "chat": 0.6, "translate": 0.5},
    "mathy": {"code": 0.4, "math": 0.9, "chat": 0.5, "translate": 0.4},
    "cheap": {"code": 0.2, "math": 0.2, "chat": 0.88, "translate": 0.85},
}
PRICES = {"strong": Decimal("0.00001"), "coder": Decimal("0.000002"), "mathy": Decimal("0.000003"),
          "cheap": Decimal("0.000001")}  # fmt: skip


def embed(texts: list[str]) -> Vectors:
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.split():
            out[i] += np.random.default_rng(zlib.crc32(word.encode())).normal(size=64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def dataset(per_topic: int = 150, seed: int = 3) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for topic, vocab in TOPICS.items():
        words = vocab.split()
        for n in range(per_topic):
            prompt = " ".join([*rng.choice(words, 4), *rng.choice(FILLER, 3), f"#{topic}{n}"])
            for model, acc in ACCURACY.items():
                rows.append(Row(prompt, model, bool(rng.random() < acc[topic])))
    return rows


@pytest.fixture(scope="module")
def trained() -> tuple[Profile, list[Row]]:
    train, held = split(dataset(), 0.25)
    return fit(train, embed, k=4), held


def test_held_out_quality_retained_and_cost_saved_against_the_strongest_model(
    trained: tuple[Profile, list[Row]],
) -> None:
    profile, held = trained
    report = evaluate(profile, held, embed, PRICES, cost_bias=0.5)
    assert report.strongest == "strong" and report.prompts == 150
    assert report.quality_retained >= 0.9, report
    assert report.cost_saved >= 0.6, report
    assert set(report.picks) >= {"coder", "mathy", "cheap"}


def test_cost_bias_runs_from_best_quality_to_cheapest(trained: tuple[Profile, list[Row]]) -> None:
    profile, held = trained
    best = evaluate(profile, held, embed, PRICES, cost_bias=0.0)
    assert best.quality_retained >= 0.95, best
    cheapest = evaluate(profile, held, embed, PRICES, cost_bias=1.0)
    assert cheapest.picks == {"cheap": 150}


def test_each_topic_goes_to_its_specialist_at_a_balanced_cost_bias(
    trained: tuple[Profile, list[Row]],
) -> None:
    profile, _ = trained
    for prompt, expected in [
        ("please fix the bug in this python function", "coder"),
        ("solve the integral and the derivative", "mathy"),
        ("recommend a movie for the weekend", "cheap"),
    ]:
        chosen = select(profile, embed([prompt])[0], PRICES, 0.5)
        assert chosen.model == expected, (prompt, chosen)
        assert [c.model for c in chosen.ranked][0] == expected and "cluster" in chosen.reason


def test_training_and_selection_are_deterministic() -> None:
    rows = dataset(per_topic=30)
    a, b = fit(rows, embed, k=4), fit(rows, embed, k=4)
    assert a.to_json() == b.to_json()
    v = embed(["translate this sentence to french"])[0]
    assert select(a, v, PRICES, 0.3) == select(b, v, PRICES, 0.3)


def test_profile_round_trips_through_json(trained: tuple[Profile, list[Row]], tmp_path: Path) -> None:
    profile, _ = trained
    profile.save(tmp_path / "p.json")
    again = Profile.load(tmp_path / "p.json")
    assert again.scores == profile.scores and np.allclose(again.centroids, profile.centroids)
    with pytest.raises(ValueError, match="not a router profile"):
        Profile.from_json(b'{"format": "other"}')


def test_selection_rejects_bad_input(trained: tuple[Profile, list[Row]]) -> None:
    profile, _ = trained
    v = embed(["hello"])[0]
    with pytest.raises(ValueError, match="cost_bias"):
        select(profile, v, PRICES, 1.5)
    with pytest.raises(ValueError, match="no candidate"):
        select(profile, v, {}, 0.5)


def test_an_unscored_model_is_ranked_with_a_neutral_prior_and_the_reason_says_so(
    trained: tuple[Profile, list[Row]],
) -> None:
    profile, _ = trained
    v = embed(["recommend a movie for the weekend"])[0]
    cluster = profile.nearest(v)
    prices = {**PRICES, "mine": Decimal(0)}  # the operator's own model, free, never scored
    chosen = select(profile, v, prices, 1.0)  # all weight on price: the free unscored model wins
    assert chosen.model == "mine" and "unscored: neutral prior" in chosen.reason
    mine = next(c for c in chosen.ranked if c.model == "mine")
    scored = [profile.scores[m][cluster] for m in PRICES]
    assert mine.prior and mine.quality == pytest.approx(sum(scored) / len(scored))
    assert select(profile, v, prices, 0.0).model != "mine"  # quality only: a specialist beats the prior


def test_kmeans_separates_obvious_clusters() -> None:
    points = np.array([[1, 0.01], [1, -0.01], [0.01, 1], [-0.01, 1]], dtype=np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centroids = kmeans(points, 2)
    labels = np.argmax(points @ centroids.T, axis=1)
    assert labels[0] == labels[1] != labels[2] == labels[3]


def test_rows_file_is_read_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(orjson.dumps({"prompt": "p", "model": "m", "correct": True}) + b"\n\n")
    assert read_rows(path) == [Row("p", "m", True)]
    path.write_text('{"prompt": "p"}\n')
    with pytest.raises(ValueError, match="rows.jsonl:1"):
        read_rows(path)
    assert callable(main)
