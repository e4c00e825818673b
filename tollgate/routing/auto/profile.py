"""A learned routing profile: cluster centroids plus per-cluster quality scores of each model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

Vectors = npt.NDArray[np.float32]
FORMAT = "tollgate-router-profile/1"


@dataclass(frozen=True)
class Profile:
    embedding_model: str
    centroids: Vectors  # (K, D), rows of norm 1
    scores: dict[str, list[float]]  # model -> quality (0..1) in each cluster
    overall: dict[str, float]  # model -> quality over the whole training set
    counts: list[int]  # training prompts per cluster

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def models(self) -> list[str]:
        return sorted(self.scores)

    def nearest(self, vector: Vectors) -> int:
        """The cluster whose centroid is closest (cosine) to ``vector``; ties go to the lower index."""
        return int(np.argmax(self.centroids @ vector))

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "embedding_model": self.embedding_model,
                "centroids": self.centroids.tolist(),
                "scores": self.scores,
                "overall": self.overall,
                "counts": self.counts,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Profile:
        data: dict[str, Any] = orjson.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a router profile (format {data.get('format')!r}, expected {FORMAT!r})")
        centroids = np.asarray(data["centroids"], dtype=np.float32)
        scores = {m: [float(s) for s in v] for m, v in data["scores"].items()}
        if any(len(v) != centroids.shape[0] for v in scores.values()):
            raise ValueError("every model needs one score per cluster")
        return cls(
            embedding_model=str(data["embedding_model"]),
            centroids=centroids,
            scores=scores,
            overall={m: float(v) for m, v in data["overall"].items()},
            counts=[int(c) for c in data["counts"]],
        )

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_json())

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.from_json(path.read_bytes())
