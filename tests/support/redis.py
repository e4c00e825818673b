"""The real Redis on this machine, for tests: a unique key prefix per test, deleted afterwards.

When Redis is unreachable the tests that need it fail rather than skip: CI starts it."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tollgate.accounts.backends import open_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def new_prefix() -> str:
    return f"tollgate_test_{secrets.token_hex(6)}:"


async def delete_prefix(redis: Redis, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await redis.delete(*keys)


async def connect() -> Redis:
    redis = open_redis(REDIS_URL)
    try:
        await redis.ping()
    except (RedisConnectionError, OSError) as exc:
        await redis.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc!r}); CI starts it")
    return redis


async def redis_with_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """Body of an async fixture: a connected client and a fresh prefix, cleaned up afterwards."""
    redis = await connect()
    prefix = new_prefix()
    try:
        yield redis, prefix
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


class RedisServer:
    """A ``redis-server`` of the test's own on a free loopback port, for tests that stop or kill it
    (``SIGSTOP``): the machine's shared Redis is never touched. No persistence; gone at exit."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
