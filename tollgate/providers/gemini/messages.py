"""OpenAI chat ``messages`` → Gemini ``systemInstruction`` + ``contents``.

* ``system`` / ``developer`` messages, wherever they stand, become the parts of one ``systemInstruction``.
* ``user`` → role ``user``; ``assistant`` → role ``model``; ``tool`` (and legacy ``function``) results →
  ``functionResponse`` parts in a ``user`` turn. Consecutive turns of the same role are merged, so the
  results of parallel tool calls travel together in one turn, as Gemini expects.
* Empty text is dropped (Gemini refuses empty ``text`` parts), and so is a message left with no parts.
* Every assistant step's first ``functionCall`` part carries a ``thoughtSignature`` (Gemini 3 answers 400
  without one): the signature the gateway returned in ``tool_calls[].extra_content.google.thought_signature``
  when the client echoes it back, otherwise Google's documented placeholder for history the model did not
  produce (``skip_thought_signature_validator``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from tollgate.errors import ValidationError

__all__ = ["SKIP_THOUGHT_SIGNATURE", "convert_messages", "guess_mime_type"]

SKIP_THOUGHT_SIGNATURE = "skip_thought_signature_validator"

_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
}


def convert_messages(messages: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Return ``(systemInstruction or None, contents)`` for an OpenAI ``messages`` array."""
    if not isinstance(messages, list) or not messages:
        raise ValidationError("messages must be a non-empty array", param="messages")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call id → function name, latest assistant message wins
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ValidationError(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(msg.get("content"), i))
        elif role == "user":
            _append(contents, "user", _user_parts(msg.get("content"), i))
        elif role == "assistant":
            _append(contents, "model", _assistant_parts(msg, i, call_names))
        elif role == "tool":
            _append(contents, "user", [_tool_result(msg, i, call_names)])
        elif role == "function":
            name = msg.get("name")
            if not isinstance(name, str) or not name:
                raise ValidationError(
                    f"messages[{i}].name is required for a function message", param=f"messages[{i}].name"
                )
            _append(contents, "user", [_function_response(name, _joined_text(msg.get("content"), i))])
        else:
            raise ValidationError(
                f"messages[{i}].role {role!r} is not supported", param=f"messages[{i}].role"
            )
    if not contents:
        raise ValidationError(
            "messages must contain at least one non-empty user or assistant message", param="messages"
        )
    return ({"parts": system} if system else None), contents


def guess_mime_type(url: str, default: str = "image/jpeg") -> str:
    """MIME type from the URL path's extension (query and fragment ignored); ``default`` when unknown."""
    path = urlsplit(url).path
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _MIME_BY_EXTENSION.get(ext, default)


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _content_list(content: Any, i: int) -> list[Any]:
    """Normalise ``content`` (null, string or array of parts) to a list of part objects."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise ValidationError(
        f"messages[{i}].content must be a string or an array", param=f"messages[{i}].content"
    )


def _part_type(part: Any, i: int, j: int) -> str:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ValidationError(
            f"messages[{i}].content[{j}] must be an object with a type", param=f"messages[{i}].content[{j}]"
        )
    return str(part["type"])


def _text_of(part: dict[str, Any], key: str, i: int, j: int) -> str:
    text = part.get(key)
    if not isinstance(text, str):
        raise ValidationError(
            f"messages[{i}].content[{j}].{key} must be a string", param=f"messages[{i}].content[{j}].{key}"
        )
    return text


def _text_parts(content: Any, i: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(_content_list(content, i)):
        kind = _part_type(part, i, j)
        if kind not in ("text", "refusal"):
            raise ValidationError(
                f"messages[{i}].content[{j}]: only text parts are allowed in this message",
                param=f"messages[{i}].content[{j}]",
            )
        text = _text_of(part, kind, i, j)
        if text:
            parts.append({"text": text})
    return parts


def _joined_text(content: Any, i: int) -> str:
    return "".join(part["text"] for part in _text_parts(content, i))


def _user_parts(content: Any, i: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(_content_list(content, i)):
        kind = _part_type(part, i, j)
        param = f"messages[{i}].content[{j}]"
        if kind == "text":
            text = _text_of(part, "text", i, j)
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise ValidationError(
                    f"{param}.image_url.url must be a non-empty string", param=f"{param}.image_url.url"
                )
            parts.append(_media_part(url, f"{param}.image_url.url"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            fmt = audio.get("format") if isinstance(audio, dict) else None
            if not isinstance(data, str) or not isinstance(fmt, str) or not data or not fmt:
                raise ValidationError(
                    f"{param}.input_audio needs data and format", param=f"{param}.input_audio"
                )
            parts.append({"inlineData": {"mimeType": f"audio/{fmt.lower()}", "data": data}})
        elif kind == "file":
            parts.append(_file_part(part.get("file"), param))
        else:
            raise ValidationError(f"{param}: content part type {kind!r} is not supported", param=param)
    return parts


def _media_part(url: str, param: str, default_mime: str = "image/jpeg") -> dict[str, Any]:
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        fields = header.split(";")
        if not comma or "base64" not in fields[1:] or not data:
            raise ValidationError(f"{param} must be a base64 data: URL", param=param)
        return {"inlineData": {"mimeType": fields[0] or default_mime, "data": data}}
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return {"fileData": {"mimeType": guess_mime_type(url, default_mime), "fileUri": url}}
    raise ValidationError(f"{param} must be an http(s) URL or a base64 data: URL", param=param)


def _file_part(file: Any, param: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data:
        raise ValidationError(
            f"{param}.file.file_data is required (file_id is not supported)", param=f"{param}.file"
        )
    if data.startswith("data:"):
        return _media_part(data, f"{param}.file.file_data", "application/pdf")
    filename = file.get("filename") if isinstance(file, dict) else None
    mime = (
        guess_mime_type(f"/{filename}", "application/pdf") if isinstance(filename, str) else "application/pdf"
    )
    return {"inlineData": {"mimeType": mime, "data": data}}


def _assistant_parts(msg: dict[str, Any], i: int, call_names: dict[str, str]) -> list[dict[str, Any]]:
    parts = _text_parts(msg.get("content"), i)
    calls = msg.get("tool_calls")
    if calls is None and isinstance(msg.get("function_call"), dict):
        calls = [{"type": "function", "function": msg["function_call"]}]  # legacy single function call
    if calls is None:
        return parts
    if not isinstance(calls, list):
        raise ValidationError(f"messages[{i}].tool_calls must be an array", param=f"messages[{i}].tool_calls")
    for k, call in enumerate(calls):
        param = f"messages[{i}].tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise ValidationError(f"{param}.function.name is required", param=f"{param}.function.name")
        part: dict[str, Any] = {"functionCall": {"name": name, "args": _arguments(function, param)}}
        signature = _signature(call)
        if signature is None and k == 0:
            signature = SKIP_THOUGHT_SIGNATURE
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            call_names[call_id] = name
    return parts


def _arguments(function: dict[str, Any], param: str) -> dict[str, Any]:
    raw = function.get("arguments")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise ValidationError(
            f"{param}.function.arguments must be a JSON object", param=f"{param}.function.arguments"
        )
    return args


def _signature(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _tool_result(msg: dict[str, Any], i: int, call_names: dict[str, str]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = call_names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise ValidationError(
            f"messages[{i}].tool_call_id {call_id!r} matches no tool call of an earlier assistant message",
            param=f"messages[{i}].tool_call_id",
        )
    return _function_response(name, _joined_text(msg.get("content"), i))


def _function_response(name: str, content: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"result": content}
    return {"functionResponse": {"name": name, "response": response}}
