"""The cache key of a classification request: a SHA-256 of the normalised request.

The parts are the account, the backend, the label configuration (labels, descriptions, examples, text type,
mode, threshold) and the input (text, images; a file's extracted text). Results are per account, so one
customer's traffic never answers another's. The entries live in the gateway's response cache
(``services/cache.py``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
