"""``jobs/objects.py`` (local directory) and ``jobs/s3.py`` (a real SeaweedFS on loopback): the same
behaviour through the one interface."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.seaweed import SeaweedS3
from tollgate.errors import PayloadTooLargeError
from tollgate.jobs.objects import BLOCK, LocalObjectStore, ObjectStore, concatenate
from tollgate.jobs.runtime import open_objects
from tollgate.settings import BatchConfig

pytestmark = pytest.mark.asyncio


def s3_config(s3: SeaweedS3) -> BatchConfig:
    """One bucket for the session (SeaweedFS gives each bucket volumes of its own); tests use unique keys."""
    return BatchConfig(
        storage="s3",
        bucket="tollgate-tests",
        endpoint_url=s3.endpoint_url,
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
    )


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        objects: ObjectStore = LocalObjectStore(tmp_path / "files")
    else:
        objects = open_objects(s3_config(request.getfixturevalue("seaweed")))
    try:
        yield objects
    finally:
        await objects.close()


async def pieces(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def unique(key: str) -> str:
    return f"{secrets.token_hex(4)}/{key}"


async def read_all(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    blocks = [b async for b in store.read(key, start, end)]
    assert all(len(b) <= BLOCK for b in blocks)
    return b"".join(blocks)


async def test_streamed_write_then_ranged_reads(store: ObjectStore) -> None:
    key = unique("input.ndjson")
    data = os.urandom(18 << 20)  # more than two multipart parts on S3
    assert await store.write(key, pieces(data), limit=len(data)) == len(data)
    assert await store.size(key) == len(data)
    assert await read_all(store, key) == data
    assert await read_all(store, key, 5, 9_000_001) == data[5:9_000_001]
    assert await read_all(store, key, 100, 100) == b""


async def test_a_write_over_the_limit_is_refused_and_leaves_nothing(store: ObjectStore) -> None:
    key = unique("input.ndjson")
    data = os.urandom(9 << 20)
    with pytest.raises(PayloadTooLargeError, match="over the limit of 8388608 bytes"):
        await store.write(key, pieces(data), limit=8 << 20)
    assert await store.size(key) is None


async def test_concatenate_and_delete_prefix(store: ObjectStore) -> None:
    job = unique("job")
    for i in range(3):
        await store.put(f"{job}/parts/{i:08d}.ndjson", f"part {i}\n".encode())
    await concatenate(store, f"{job}/results.ndjson", [f"{job}/parts/{i:08d}.ndjson" for i in range(3)])
    assert await read_all(store, f"{job}/results.ndjson") == b"part 0\npart 1\npart 2\n"
    await store.delete_prefix(f"{job}/parts")
    assert await store.size(f"{job}/parts/00000000.ndjson") is None
    assert await store.size(f"{job}/results.ndjson") is not None
    await store.delete_prefix(job)
    assert await store.size(f"{job}/results.ndjson") is None


async def test_local_keys_cannot_leave_the_directory(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "files")
    with pytest.raises(ValueError, match="leaves the store's directory"):
        await store.put("../outside", b"x")


async def test_s3_presigned_post_enforces_the_size_limit_and_presigned_get_serves(seaweed: SeaweedS3) -> None:
    store = open_objects(s3_config(seaweed))
    try:
        key = unique("input.ndjson")
        form = await store.upload_form(key, 1000, 60)
        assert form is not None
        url, fields = form
        async with httpx.AsyncClient() as client:
            too_big = await client.post(url, data=fields, files={"file": ("in.ndjson", b"x" * 2000)})
            assert too_big.status_code == 400, too_big.text
            assert await store.size(key) is None
            ok = await client.post(url, data=fields, files={"file": ("in.ndjson", b'{"text": "hi"}\n')})
            assert ok.status_code in (200, 204), ok.text
            assert await store.size(key) == 15
            forged = await client.post(
                url, data={**fields, "key": "jobs/other/input.ndjson"}, files={"file": ("x", b"x")}
            )
            assert forged.status_code == 403
            download = await store.download_url(key, 60)
            assert download is not None
            got = await client.get(download)
            assert got.status_code == 200 and got.content == b'{"text": "hi"}\n'
            assert (await client.get(download.split("?")[0])).status_code == 403
    finally:
        await store.close()
