"""OpenAI's Responses API (``POST /v1/responses``) onto chat completions: pure translators, no I/O.

For one Responses request ``body``::

    chat = chat_request_from_responses(body)                    # what the pipeline sends upstream
    # JSON:    response_from_chat(completion, request=body, response_id=..., created_at=...)
    # stream:  ResponsesStreamEncoder(request=body, ...).feed(chunk) / .finish() / .fail(error)

Upstreams that serve the Responses API themselves get the request as it is (``services.completions``,
``providers.openai_responses``); the others are reached through chat completions. What cannot be expressed in
chat completions is refused with a 400 that says what to send instead: stored state (``previous_response_id``,
``conversation``, ``prompt``; ``stateful_refusal``: native upstreams serve it), ``background`` (never: the
gateway could not bill a response finished after it answered), built-in tools (web search, file search,
...) and ``item_reference`` items. ``reasoning`` items sent back as input are dropped (chat has no slot for
them).
Fields the Responses API does not define pass through unchanged, as on chat completions (vendor extensions,
the gateway's routing preferences); Responses fields with no chat equivalent (``store``, ``include``,
``truncation``, ...) are left out. The answer's direction (response object, streaming events) lives in
``responses_output``.
"""

from __future__ import annotations

from typing import Any

from tollgate.errors import ValidationError
from tollgate.protocol.chat import MAX_COUNT
from tollgate.protocol.responses_output import ResponsesStreamEncoder, response_from_chat, responses_usage

__all__ = [
    "ResponsesStreamEncoder",
    "chat_request_from_responses",
    "response_from_chat",
    "responses_usage",
    "stateful_refusal",
]

# Every request field of the Responses API; any other field is passed through to the chat request.
_RESPONSES_FIELDS = frozenset(
    (
        "background", "context_management", "conversation", "include", "input", "instructions",
        "max_output_tokens", "max_tool_calls", "metadata", "model", "parallel_tool_calls",
        "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_retention", "reasoning",
        "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature", "text",
        "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
    )
)  # fmt: skip
_STATEFUL = {
    "previous_response_id": "this gateway does not store responses; send the whole conversation in 'input'",
    "conversation": "this gateway does not store conversations; send the whole conversation in 'input'",
    "prompt": "stored prompts are not available; send 'instructions' and 'input' instead",
}
_ROLES = ("user", "assistant", "system", "developer")


def _invalid(message: str, param: str) -> ValidationError:
    return ValidationError(message, param=param)


def _text_of(part: dict[str, Any], where: str) -> str:
    text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
    if not isinstance(text, str):
        raise _invalid(f"'{where}' needs a 'text' string.", "input")
    return text


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise _invalid(
            f"'{where}': images need an 'image_url' (a URL or a data: URL); file ids are not available.",
            "input",
        )
    image: dict[str, Any] = {"url": url}
    if isinstance(part.get("detail"), str):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = {k: part[k] for k in ("file_data", "file_id", "filename") if isinstance(part.get(k), str)}
    if "file_data" not in file and "file_id" not in file:
        raise _invalid(
            f"'{where}': files need 'file_data' or 'file_id' ('file_url' is not available).", "input"
        )
    return {"type": "file", "file": file}


def _content(content: Any, role: str, where: str) -> str | list[dict[str, Any]]:
    """Chat content for one message: a string, or content parts for user messages."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"'{where}.content' must be a string or an array of content parts.", "input")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or kind is None:
            raise _invalid(f"'{pwhere}' must be an object with a 'type'.", "input")
        if kind in ("input_text", "output_text", "text", "refusal"):
            parts.append({"type": "text", "text": _text_of(part, pwhere)})
        elif kind == "input_image" and role == "user":
            parts.append(_image_part(part, pwhere))
        elif kind == "input_file" and role == "user":
            parts.append(_file_part(part, pwhere))
        else:
            raise _invalid(f"'{pwhere}.type' {kind!r} is not supported in a {role} message.", "input")
    if role == "user":
        return parts
    return "".join(p["text"] for p in parts)


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise _invalid(f"'{where}.role' must be one of {', '.join(_ROLES)}; got {role!r}.", "input")
    content = _content(item.get("content"), role, where)
    # "developer" is OpenAI's newer name for "system"; not every upstream knows it.
    return {"role": "system" if role == "developer" else role, "content": content}


def _function_call(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise _invalid(
            f"'{where}': function_call items need 'call_id', 'name' and 'arguments' strings.", "input"
        )
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":  # one assistant turn: its text and all its calls
        last.setdefault("tool_calls", []).append(call)
        if last["content"] == "":
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _function_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise _invalid(f"'{where}': function_call_output items need a 'call_id'.", "input")
    if isinstance(output, list):
        output = _content(output, "tool", where)
    if not isinstance(output, str):
        raise _invalid(f"'{where}.output' must be a string or an array of input_text parts.", "input")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _input_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if value is None:
        raise _invalid("'input' is required: a string or an array of input items.", "input")
    if not isinstance(value, list) or not value:
        raise _invalid("'input' must be a string or a non-empty array of input items.", "input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _invalid(f"'{where}' must be an object (a message or a function call item).", "input")
        match item.get("type", "message"):
            case "message":
                messages.append(_message(item, where))
            case "function_call":
                _function_call(messages, item, where)
            case "function_call_output":
                messages.append(_function_output(item, where))
            case "reasoning":
                continue
            case other:
                raise _invalid(
                    f"'{where}.type' {other!r} is not supported; use message, function_call or "
                    "function_call_output items.",
                    "input",
                )
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _invalid("'tools' must be an array of function tools.", "tools")
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or kind != "function":
            raise _invalid(
                f"'tools[{i}]': only function tools are available through this gateway; got type {kind!r}.",
                "tools",
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"'tools[{i}].name' is required.", "tools")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _invalid(
        f'\'tool_choice\' must be auto, none, required or {{"type": "function", "name": ...}}; got {choice!r}.',
        "tool_choice",
    )


def _text_format(text: Any, out: dict[str, Any]) -> None:
    if not isinstance(text, dict):
        raise _invalid('\'text\' must be an object such as {"format": {"type": "text"}}.', "text")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        pass
    elif kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema" and isinstance(fmt, dict):
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise _invalid(
                "'text.format' of type json_schema needs a 'name' and a 'schema' object.", "text.format"
            )
        schema = {k: fmt[k] for k in ("name", "schema", "description", "strict") if fmt.get(k) is not None}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise _invalid(
            f"'text.format.type' must be text, json_object or json_schema; got {kind!r}.", "text.format"
        )
    if isinstance(text.get("verbosity"), str):
        out["verbosity"] = text["verbosity"]


def stateful_refusal(body: dict[str, Any]) -> ValidationError | None:
    """The 400 for a request that needs state stored upstream (only native upstreams can serve it)."""
    for name, hint in _STATEFUL.items():
        if body.get(name):
            return _invalid(
                f"'{name}' is not supported: {hint} (only models served by an upstream with the Responses "
                "API accept it).",
                name,
            )
    return None


def chat_request_from_responses(body: Any, *, stateful: bool = False) -> dict[str, Any]:
    """Translate a Responses request into a chat-completions request.

    Raises ``ValidationError`` naming the field and what to send instead when the request is malformed or
    asks for something chat completions cannot do. ``stateful=True`` lets the stored-state fields through
    (left out of the chat request): the caller checks ``stateful_refusal`` once it knows the upstream.
    """
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required: name one of the models listed by GET /v1/models.", "model")
    refusal = None if stateful else stateful_refusal(body)
    if refusal is not None:
        raise refusal
    if body.get("background"):
        raise _invalid("'background' is not supported: background responses are not available.", "background")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid("'instructions' must be a string.", "instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    messages += _input_messages(body.get("input"))
    out: dict[str, Any] = {k: v for k, v in body.items() if k not in _RESPONSES_FIELDS}
    out.update(model=model, messages=messages)

    max_output = body.get("max_output_tokens")
    if max_output is not None:
        if (
            isinstance(max_output, bool)
            or not isinstance(max_output, int)
            or not 1 <= max_output <= MAX_COUNT
        ):
            raise _invalid(
                f"'max_output_tokens' must be a positive integer up to {MAX_COUNT}; got {max_output!r}.",
                "max_output_tokens",
            )
        out["max_tokens"] = max_output
    for key in ("temperature", "top_p", "user"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("text") is not None:
        _text_format(body["text"], out)
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("'stream' must be true or false.", "stream")
    if stream:
        out["stream"] = True
    return out
