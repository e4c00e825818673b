"""Where batch files live: one interface, a local directory (the default, one machine) or an S3-compatible
object store (``s3.py``, several machines). Callers never branch on the backend.

Keys are relative paths such as ``jobs/<job id>/input.ndjson``. Every write goes to a temporary name first and
is renamed into place (locally) or completed as one upload (S3), so a reader never sees half an object and a
retried write simply replaces it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from tollgate.errors import PayloadTooLargeError

BLOCK = 1 << 20  # bytes per read and per write


class ObjectStore(Protocol):
    async def write(self, key: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Store the stream under ``key`` in constant memory; the size written. Over ``limit`` bytes: 413,
        and nothing is stored."""
        ...

    async def put(self, key: str, data: bytes) -> None: ...

    async def size(self, key: str) -> int | None:
        """``None``: no such object."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of the object, in blocks of at most ``BLOCK`` bytes."""
        ...

    async def delete_prefix(self, prefix: str) -> None: ...

    async def upload_form(self, key: str, limit: int, ttl: int) -> tuple[str, dict[str, str]] | None:
        """A presigned POST (URL and form fields) that uploads straight to the store; ``None``: the store has
        none, clients upload through Tollgate."""
        ...

    async def download_url(self, key: str, ttl: int) -> str | None:
        """A presigned GET of the object; ``None``: clients download through Tollgate."""
        ...

    async def close(self) -> None: ...


async def regroup(chunks: AsyncIterator[bytes], size: int, limit: int) -> AsyncIterator[bytes]:
    """The stream again in blocks of at least ``size`` bytes but for the last, which is shorter (and left out
    when nothing is held); once more than ``limit`` bytes have come in all, 413 (``PayloadTooLargeError``)."""
    total = 0
    held: list[bytes] = []
    held_size = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"The input is over the limit of {limit} bytes.")
        held.append(chunk)
        held_size += len(chunk)
        if held_size >= size:
            yield b"".join(held)
            held, held_size = [], 0
    if held:
        yield b"".join(held)


async def concatenate(store: ObjectStore, key: str, parts: list[str]) -> int:
    """Write the objects ``parts`` one after the other as ``key`` (streamed); the size written."""

    async def blocks() -> AsyncIterator[bytes]:
        for part in parts:
            async for block in store.read(part):
                yield block

    return await store.write(key, blocks(), limit=1 << 62)


class LocalObjectStore:
    """Files under one directory. File I/O runs in worker threads, a block (1 MiB) at a time."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"object key {key!r} leaves the store's directory")
        return path

    async def write(self, key: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        path = self._path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        f = await asyncio.to_thread(open, tmp, "wb")
        size = 0
        try:
            async for block in regroup(chunks, BLOCK, limit):
                size += len(block)
                await asyncio.to_thread(f.write, block)
            await asyncio.to_thread(_sync_close, f)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return size

    async def put(self, key: str, data: bytes) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        await self.write(key, one(), limit=len(data))

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            left = None if end is None else end - start
            while left is None or left > 0:
                block = await asyncio.to_thread(f.read, BLOCK if left is None else min(BLOCK, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block
        finally:
            f.close()

    async def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            await asyncio.to_thread(shutil.rmtree, path, True)
        else:
            path.unlink(missing_ok=True)

    async def upload_form(self, key: str, limit: int, ttl: int) -> tuple[str, dict[str, str]] | None:  # noqa: ARG002
        return None

    async def download_url(self, key: str, ttl: int) -> str | None:  # noqa: ARG002
        return None

    async def close(self) -> None:
        return None


def _sync_close(f: BinaryIO) -> None:
    """Flush and fsync a file, then close it: a result checkpointed in the database is on disk."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
