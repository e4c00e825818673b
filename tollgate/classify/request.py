"""Validation of classification requests and saved-classifier definitions.

Every bad field is a 422 in the classification error shape, naming the field in ``details.field``. The limits
(also listed in the README) are the constants below.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tollgate.errors import ValidationError

MAX_LABELS = 200
MAX_LABEL_CHARS = 100
MAX_TEXT_CHARS = 50_000
MAX_BATCH_TEXTS = 1000
MAX_DESCRIPTION_CHARS = 500
MAX_EXAMPLES_PER_LABEL = 20
MAX_EXAMPLE_CHARS = 2000
MAX_TEXT_TYPE_CHARS = 100
MAX_IMAGES = 20
MAX_NAME_CHARS = 64
MAX_VERSION = 2**31 - 1  # what the classifiers table's version column holds (PostgreSQL integer)

Mode = Literal["single", "multi"]
Backend = Literal["local", "llm"]
Priority = Literal["standard", "fast", "batch"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REF = re.compile(r"^(?P<name>[^@]+)(?:@v(?P<version>[1-9][0-9]*))?$")


class UnprocessableError(ValidationError):
    """A field of a classification request is invalid: 422 ``validation-error``."""

    status = 422


def invalid(message: str, field_name: str) -> UnprocessableError:
    return UnprocessableError(message, param=field_name)


@dataclass(frozen=True, slots=True)
class Spec:
    """What to classify into: the part of a request a saved classifier stores."""

    labels: tuple[str, ...]
    descriptions: dict[str, str] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    text_type: str | None = None
    mode: Mode = "single"
    threshold: float = 0.5
    backend: Backend | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "descriptions": self.descriptions,
            "examples": self.examples,
            "text_type": self.text_type,
            "mode": self.mode,
            "threshold": self.threshold,
            "backend": self.backend,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(
            labels=tuple(data["labels"]),
            descriptions=dict(data.get("descriptions") or {}),
            examples={k: list(v) for k, v in (data.get("examples") or {}).items()},
            text_type=data.get("text_type"),
            mode=data.get("mode", "single"),
            threshold=float(data.get("threshold", 0.5)),
            backend=data.get("backend"),
        )


@dataclass(slots=True)
class ClassifyRequest:
    """A validated request. ``spec`` is ``None`` when ``classifier`` names a saved one to load."""

    texts: list[str]
    spec: Spec | None
    classifier: str | None = None
    threshold: float | None = None
    images: list[str] = field(default_factory=list)
    file: bytes | None = None
    priority: Priority = "standard"
    cache: bool = True
    batch: bool = False
    # Batch items that are not classifiable texts: their index → why (they fail alone, not the call).
    item_errors: dict[int, str] = field(default_factory=dict)


def _string(value: Any, name: str, limit: int, *, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise invalid(f"'{name}' must be {what}", name)
    if not value.strip():
        raise invalid(f"'{name}' must not be empty", name)
    if len(value) > limit:
        raise invalid(f"'{name}' is {len(value)} characters; the limit is {limit}", name)
    if "\x00" in value:
        raise invalid(f"'{name}' must not contain NUL (\\u0000) characters", name)
    return value


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise invalid("'labels' must be an array of strings", "labels")
    if not 1 <= len(value) <= MAX_LABELS:
        raise invalid(f"'labels' must have between 1 and {MAX_LABELS} labels; got {len(value)}", "labels")
    labels = tuple(_string(v, "labels", MAX_LABEL_CHARS) for v in value)
    if len(set(labels)) != len(labels):
        raise invalid("Labels must be unique", "labels")
    return labels


def _descriptions(value: Any, labels: tuple[str, ...]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("'descriptions' must be an object mapping labels to text", "descriptions")
    out: dict[str, str] = {}
    for label, text in value.items():
        if label not in labels:
            raise invalid(f"'descriptions' names '{label}', which is not one of the labels", "descriptions")
        out[label] = _string(text, "descriptions", MAX_DESCRIPTION_CHARS)
    return out


def _examples(value: Any, labels: tuple[str, ...]) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("'examples' must be an object mapping labels to arrays of text", "examples")
    out: dict[str, list[str]] = {}
    for label, texts in value.items():
        if label not in labels:
            raise invalid(f"'examples' names '{label}', which is not one of the labels", "examples")
        if not isinstance(texts, list) or len(texts) > MAX_EXAMPLES_PER_LABEL:
            raise invalid(
                f"'examples' of '{label}' must be an array of at most {MAX_EXAMPLES_PER_LABEL} texts",
                "examples",
            )
        out[label] = [_string(t, "examples", MAX_EXAMPLE_CHARS) for t in texts]
    return out


def _threshold(value: Any, name: str = "threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise invalid(f"'{name}' must be a number between 0 and 1", name)
    return float(value)


def _spec(data: dict[str, Any], mode: Mode) -> Spec:
    labels = _labels(data.get("labels"))
    text_type = data.get("text_type")
    return Spec(
        labels=labels,
        descriptions=_descriptions(data.get("descriptions"), labels),
        examples=_examples(data.get("examples"), labels),
        text_type=None if text_type is None else _string(text_type, "text_type", MAX_TEXT_TYPE_CHARS),
        mode=mode,
        threshold=_threshold(data["threshold"]) if data.get("threshold") is not None else 0.5,
    )


def _images(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not 1 <= len(items) <= MAX_IMAGES:
        raise invalid(f"'image' takes between 1 and {MAX_IMAGES} images", "image")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise invalid("'image' must be a URL or base64 data, or an array of them", "image")
        if not item.startswith(("http://", "https://", "data:image/")):
            _base64(item, "image")
    return list(items)


def _base64(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"'{name}' must be base64-encoded data", name)
    payload = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"'{name}' is not valid base64", name) from None


_COMMON = {"labels", "classifier", "descriptions", "examples", "text_type", "priority", "cache"}
FIELDS = {
    ("classify", False): _COMMON | {"text", "image", "file"},
    ("tag", False): _COMMON | {"text", "image", "file", "threshold"},
    ("classify", True): _COMMON | {"texts"},
    ("tag", True): _COMMON | {"texts", "threshold"},
}


def parse_request(data: Any, *, multi: bool, batch: bool) -> ClassifyRequest:
    """Validate a ``/v1/classify``, ``/v1/tag`` or batch body (already decoded from JSON)."""
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object", "body")
    allowed = FIELDS[("tag" if multi else "classify", batch)]
    for name in data:
        if name not in allowed:
            raise invalid(f"Unknown field '{name}'; accepted: {', '.join(sorted(allowed))}", name)
    mode: Mode = "multi" if multi else "single"

    classifier = data.get("classifier")
    spec: Spec | None = None
    if classifier is not None:
        parse_ref(classifier)
        for name in ("labels", "descriptions", "examples"):
            if data.get(name) is not None:
                raise invalid(f"Give either 'classifier' or '{name}', not both", name)
    elif data.get("labels") is None:
        raise invalid("'labels' is required unless 'classifier' names a saved classifier", "labels")
    else:
        spec = _spec(data, mode)

    texts: list[str]
    images: list[str] = []
    file: bytes | None = None
    item_errors: dict[int, str] = {}
    if batch:
        raw = data.get("texts")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH_TEXTS:
            raise invalid(f"'texts' must be an array of 1 to {MAX_BATCH_TEXTS} strings", "texts")
        texts = []
        for i, t in enumerate(raw):
            try:
                texts.append(_string(t, f"texts[{i}]", MAX_TEXT_CHARS))
            except UnprocessableError as err:
                item_errors[i] = err.message
                texts.append("")
    else:
        if data.get("image") is not None:
            images = _images(data["image"])
        if data.get("file") is not None:
            file = _base64(data["file"], "file")
        text = data.get("text")
        if text is None and not images and file is None:
            raise invalid("'text' is required unless 'image' or 'file' is given", "text")
        texts = [] if text is None else [_string(text, "text", MAX_TEXT_CHARS)]

    priority = data.get("priority", "standard")
    if priority not in ("standard", "fast"):
        raise invalid("'priority' must be 'standard' or 'fast'", "priority")
    cache = data.get("cache", True)
    if not isinstance(cache, bool):
        raise invalid("'cache' must be true or false", "cache")
    threshold = data.get("threshold")
    return ClassifyRequest(
        texts=texts,
        spec=spec,
        classifier=classifier,
        threshold=None if threshold is None else _threshold(threshold),
        images=images,
        file=file,
        priority="batch" if batch else priority,
        cache=cache,
        batch=batch,
        item_errors=item_errors,
    )


def parse_ref(value: Any) -> tuple[str, int | None]:
    """``name`` (the latest version) or ``name@v2`` (pinned)."""
    if (
        not isinstance(value, str)
        or not (m := _REF.fullmatch(value))
        or not _NAME.fullmatch(m["name"])
        or len(m["name"]) > MAX_NAME_CHARS
    ):
        raise invalid(
            "'classifier' must be a saved classifier's name, optionally pinned as 'name@v2'", "classifier"
        )
    version = m["version"]
    if version is not None and (len(version) > 10 or int(version) > MAX_VERSION):
        raise invalid(f"A classifier version is at most {MAX_VERSION}; got '{value}'", "classifier")
    return m["name"], int(version) if version else None


def mode_and_backend(data: dict[str, Any]) -> tuple[Mode, Backend | None]:
    """A definition's ``mode`` (default ``single``) and ``backend`` (``None``: the server's choice), checked."""
    mode = data.get("mode", "single")
    if mode not in ("single", "multi"):
        raise invalid("'mode' must be 'single' or 'multi'", "mode")
    backend = data.get("backend")
    if backend not in (None, "local", "llm"):
        raise invalid("'backend' must be 'local' or 'llm'", "backend")
    return mode, backend


def parse_definition(data: Any) -> tuple[str, Spec]:
    """A ``POST /v1/classifiers`` body: the name and what it classifies into."""
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object", "body")
    allowed = {"name", "labels", "descriptions", "examples", "text_type", "mode", "threshold", "backend"}
    for name in data:
        if name not in allowed:
            raise invalid(f"Unknown field '{name}'; accepted: {', '.join(sorted(allowed))}", name)
    name = _string(data.get("name"), "name", MAX_NAME_CHARS)
    if not _NAME.fullmatch(name):
        raise invalid(
            "'name' may use letters, digits, '_', '-' and '.', and must start with a letter or digit", "name"
        )
    mode, backend = mode_and_backend(data)
    if data.get("labels") is None:
        raise invalid("'labels' is required", "labels")
    spec = _spec(data, mode)
    return name, Spec(
        spec.labels, spec.descriptions, spec.examples, spec.text_type, mode, spec.threshold, backend
    )
