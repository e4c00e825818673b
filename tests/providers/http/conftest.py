"""The upstream HTTP client's tests run every async test on asyncio's loop and on uvloop: the gateway serves on
uvloop, whose transports differ from asyncio's (they do not subclass ``asyncio.Transport``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
