from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tollgate.simulator import SimServer


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


@pytest.fixture
def gateway(tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    with Gateway(tmp_path, sim.base_url) as gw:
        yield gw
