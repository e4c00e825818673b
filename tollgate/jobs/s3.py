"""The S3-compatible object store (AWS S3, SeaweedFS, MinIO, ...) through aiobotocore.

Writes of more than one part go up as a multipart upload (8 MiB parts, aborted on failure, so a failed
write leaves nothing); reads are ranged GETs streamed a block at a time; uploads and downloads by clients go
straight to the store through presigned POSTs (with a ``content-length-range`` condition: the size limit is
the store's to enforce) and presigned GETs. The bucket is created on first use when it does not exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from tollgate.jobs.objects import BLOCK, regroup
from tollgate.settings import BatchConfig

PART = 8 << 20  # multipart part size (S3's minimum is 5 MiB, but for the last part)


class S3ObjectStore:
    def __init__(self, config: BatchConfig) -> None:
        assert config.bucket is not None
        self.config = config
        self.bucket = config.bucket
        self._session = get_session()
        self._context: Any = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    c = self.config
                    self._context = self._session.create_client(
                        "s3",
                        endpoint_url=c.endpoint_url,
                        region_name=c.region,
                        aws_access_key_id=c.access_key_id,
                        aws_secret_access_key=c.secret_access_key,
                        config=AioConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
                    )
                    client = await self._context.__aenter__()
                    try:
                        await client.head_bucket(Bucket=self.bucket)
                    except ClientError:
                        await client.create_bucket(Bucket=self.bucket)
                    self._client = client
        return self._client

    async def write(self, key: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        s3 = await self._s3()
        size = 0
        last = b""  # the shorter block that ends the stream
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def upload(upload: str, body: bytes) -> None:
            n = len(parts) + 1
            res = await s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)
            parts.append({"PartNumber": n, "ETag": res["ETag"]})

        try:
            async for block in regroup(chunks, PART, limit):
                size += len(block)
                if len(block) < PART:
                    last = block
                    continue
                if upload_id is None:
                    upload_id = (await s3.create_multipart_upload(Bucket=self.bucket, Key=key))["UploadId"]
                await upload(upload_id, block)
            if upload_id is None:
                await s3.put_object(Bucket=self.bucket, Key=key, Body=last)
                return size
            if last:
                await upload(upload_id, last)
            await s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            return size
        except BaseException:
            if upload_id is not None:
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    async def put(self, key: str, data: bytes) -> None:
        s3 = await self._s3()
        await s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def size(self, key: str) -> int | None:
        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        s3 = await self._s3()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        res = await s3.get_object(**args)
        async with res["Body"] as body:
            while block := await body.read(BLOCK):
                yield block

    async def delete_prefix(self, prefix: str) -> None:
        s3 = await self._s3()
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    async def upload_form(self, key: str, limit: int, ttl: int) -> tuple[str, dict[str, str]] | None:
        s3 = await self._s3()
        form = await s3.generate_presigned_post(
            Bucket=self.bucket, Key=key, Conditions=[["content-length-range", 1, limit]], ExpiresIn=ttl
        )
        return str(form["url"]), {k: str(v) for k, v in form["fields"].items()}

    async def download_url(self, key: str, ttl: int) -> str | None:
        s3 = await self._s3()
        url = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl
        )
        return str(url)

    async def close(self) -> None:
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._context = self._client = None
