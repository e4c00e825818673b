"""Fixture loaders for the Anthropic translator tests (files live in tests/fixtures/anthropic/)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "anthropic"


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE recording into ``(event, data)`` pairs, as a client's SSE decoder would."""
    events: list[tuple[str, dict[str, Any]]] = []
    for frame in text.split("\n\n"):
        name, data = None, []
        for line in frame.splitlines():
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].lstrip(" "))
        if name is not None:
            events.append((name, json.loads("\n".join(data))))
    return events


@pytest.fixture
def load_json() -> Callable[[str], Any]:
    return lambda name: json.loads((FIXTURES / name).read_text())


@pytest.fixture
def load_sse() -> Callable[[str], list[tuple[str, dict[str, Any]]]]:
    return lambda name: parse_sse((FIXTURES / name).read_text())


@pytest.fixture
def load_bytes() -> Callable[[str], bytes]:
    return lambda name: (FIXTURES / name).read_bytes()
