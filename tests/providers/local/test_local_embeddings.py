"""tollgate/local/embedder.py and the local provider's embeddings: the real all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tollgate.local.bundled import installed

if not installed("sentence_transformers"):  # checked without importing torch at collection time
    pytest.skip("the [local] extra is not installed", allow_module_level=True)

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from tollgate.errors import UpstreamRejectedError  # noqa: E402
from tollgate.local.embedder import get_embedder  # noqa: E402
from tollgate.providers.local import LocalProvider  # noqa: E402
from tollgate.providers.local.client import EMBEDDING_MODEL  # noqa: E402
from tollgate.settings import ProviderConfig  # noqa: E402


def provider() -> LocalProvider:
    return LocalProvider(ProviderConfig(name="local", kind="local"), None)


async def embed(**body: Any) -> Any:
    return await provider().embeddings(body, EMBEDDING_MODEL, 120)


def test_one_embedder_per_process_with_normalized_float32_rows() -> None:
    embedder = get_embedder()
    assert get_embedder() is embedder
    vectors = embedder.encode(["the cat sat on the mat", "a kitten sits on a rug", "quarterly tax filing"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.2
    assert embedder.encode([]).shape == (0, 384)


def test_token_counts_come_from_the_models_tokenizer_and_truncate_like_encode() -> None:
    embedder = get_embedder()
    assert embedder.count_tokens(["hello world", "foo"]) == [4, 3], "[CLS] hello world [SEP]"
    assert embedder.count_tokens(["word " * 1000]) == [embedder.max_seq_length]


async def test_async_encode_matches_encode() -> None:
    embedder = get_embedder()
    assert np.array_equal(await embedder.aencode(["x y"]), embedder.encode(["x y"]))


async def test_float_embeddings_in_openai_shape_with_usage() -> None:
    result = await embed(input=["hello world", "foo"])
    data = orjson.loads(result.body)
    assert data["object"] == "list" and data["model"] == EMBEDDING_MODEL
    assert [(d["object"], d["index"], len(d["embedding"])) for d in data["data"]] == [
        ("embedding", 0, 384),
        ("embedding", 1, 384),
    ]
    assert data["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert result.usage is not None and result.usage.prompt_tokens == 7
    expected = get_embedder().encode(["hello world", "foo"])
    assert np.allclose(np.array(data["data"][0]["embedding"], dtype=np.float32), expected[0])


async def test_base64_embeddings_are_little_endian_float32() -> None:
    result = await embed(input="hello world", encoding_format="base64")
    (item,) = orjson.loads(result.body)["data"]
    vector = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    assert np.array_equal(vector, get_embedder().encode(["hello world"])[0])


@pytest.mark.parametrize(
    "body",
    [
        {"input": [[1, 2, 3]]},
        {"input": []},
        {"input": "x", "dimensions": 256},
        {"input": "x", "encoding_format": "int8"},
    ],
)
async def test_requests_the_local_model_cannot_serve_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamRejectedError):
        await embed(**body)


async def test_a_chat_model_name_is_not_an_embedding_model() -> None:
    with pytest.raises(UpstreamRejectedError, match="not an embedding model"):
        await provider().embeddings({"input": "x"}, "smollm2", 60)
