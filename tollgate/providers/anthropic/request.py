"""OpenAI chat-completions request body -> Anthropic Messages request body (pure, no I/O).

Structured output (``response_format``) is emulated with a forced tool, because the Messages API has
no JSON mode: a single tool named after the schema (``json_schema.name``; :data:`JSON_OBJECT_TOOL`
for ``json_object``) whose ``input_schema`` is the requested schema is added, and the model is forced
to call it. The tool's ``input`` *is* the answer: ``to_openai_response`` / ``StreamTranslator`` turn that
call back into message ``content`` (JSON text) with finish_reason ``stop`` when they are given
``json_tool=json_tool_name(body)``. When the client also sends its own tools, ``tool_choice`` becomes
``any`` (answer through the JSON tool or call a real tool) instead of forcing the JSON tool.

Anthropic's documented constraints the translation enforces:

* ``system``/``developer`` messages are hoisted, in order, into the top-level ``system`` string (joined
  with blank lines), or a list of text blocks when a part carries ``cache_control``.
* Consecutive same-role turns are merged; ``tool`` messages become ``tool_result`` blocks in a user turn,
  placed before any text of that turn (Anthropic rejects text before ``tool_result``).
* ``temperature`` is 0-1 (OpenAI's 0-2 is clamped); recent Claude models reject ``temperature`` together
  with ``top_p``, so ``top_p`` is dropped when both are given.
* ``reasoning_effort`` -> ``thinking`` (minimal/low 1024, medium 4096, high/xhigh/max 16384 budget tokens;
  ``none`` disables). ``max_tokens`` covers thinking plus answer on both APIs: without a client limit it
  becomes ``budget + default_max_tokens``; a client limit is kept and the budget shrunk below it (thinking
  is dropped when the limit is under 1025). With thinking on, ``temperature`` and ``top_k`` are dropped and
  ``top_p`` kept only when >= 0.95. Thinking is also dropped when the tool choice forces a tool (Anthropic
  rejects forced tool use with thinking) and when the request ends in a tool loop (its last user turn
  carries tool results) or with an assistant prefill: Anthropic then requires the signed thinking block of
  that assistant turn, which OpenAI clients cannot send back.
* ``web_search_options`` becomes Anthropic's server ``web_search`` tool (``web_search_tool``); the search
  blocks of the answer are not shown, its text is.
* OpenAI-only fields (logprobs, presence/frequency penalties, seed, stream_options, ...) are dropped;
  ``n`` > 1 is rejected. ``cache_control`` on text/image parts is passed through (prompt caching).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from tollgate.errors import ValidationError

__all__ = ["JSON_OBJECT_TOOL", "build_request", "json_tool_name"]

JSON_OBJECT_TOOL = "json_response"
THINKING_BUDGETS: dict[str, int | None] = {
    "none": None,
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 16384,
    "max": 16384,
}
MIN_THINKING_BUDGET = 1024
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def json_tool_name(body: dict[str, Any]) -> str | None:
    """Name of the tool that emulates ``response_format`` for this OpenAI request, if any.

    Pass it as ``json_tool`` to ``to_openai_response`` / ``StreamTranslator`` for the same request.
    """
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return JSON_OBJECT_TOOL
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            raise ValidationError("response_format.json_schema.name is required", param="response_format")
        return name
    return None


def _image_block(url: Any, where: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise ValidationError(f"{where}: image_url.url must be a string", param="messages")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise ValidationError(f"{where}: image data URLs must be base64 encoded", param="messages")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise ValidationError(
                f"{where}: image type {media_type or '<missing>'!r} is not supported by Anthropic models "
                f"(use one of {', '.join(sorted(IMAGE_MEDIA_TYPES))})",
                param="messages",
            )
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(
                f"{where}: the image data URL is not valid base64", param="messages"
            ) from None
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ValidationError(f"{where}: image URLs must be http(s) or base64 data URLs", param="messages")


def _content_blocks(content: Any, where: str, *, allow_images: bool = True) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) -> Anthropic blocks; empty text is skipped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise ValidationError(f"{where}: content must be a string or a list of parts", param="messages")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        ptype = part.get("type") if isinstance(part, dict) else None
        block: dict[str, Any]
        if ptype in ("text", "refusal"):
            text = part.get(ptype)
            if not isinstance(text, str):
                raise ValidationError(f"{where}.content[{j}]: {ptype} must be a string", param="messages")
            if not text:
                continue
            block = {"type": "text", "text": text}
        elif ptype == "image_url" and allow_images:
            image = part.get("image_url")
            block = _image_block(
                image.get("url") if isinstance(image, dict) else image, f"{where}.content[{j}]"
            )
        else:
            raise ValidationError(
                f"{where}.content[{j}]: content part type {ptype!r} is not supported by Anthropic models",
                param="messages",
            )
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        raise ValidationError(f"{where}: tool_calls must be a list", param="messages")
    blocks = []
    for j, call in enumerate(tool_calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not isinstance(call.get("id"), str)
        ):
            raise ValidationError(
                f"{where}.tool_calls[{j}]: needs an id and a function name", param="messages"
            )
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise ValidationError(
                f"{where}.tool_calls[{j}].function.arguments is not valid JSON", param="messages"
            ) from None
        if not isinstance(args, dict):
            raise ValidationError(
                f"{where}.tool_calls[{j}].function.arguments must be a JSON object", param="messages"
            )
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": args})
    return blocks


def _tool_result_block(msg: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ValidationError(f"{where}: tool messages need a tool_call_id", param="messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = _content_blocks(content, where)
        if parts:
            block["content"] = parts
    return block


def _convert_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise ValidationError("messages must be a non-empty list", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role") if isinstance(msg, dict) else None
        if role in ("system", "developer"):
            system += _content_blocks(msg.get("content"), where, allow_images=False)
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), where)
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"), where, allow_images=False)
            if msg.get("tool_calls"):
                blocks += _tool_use_blocks(msg["tool_calls"], where)
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(msg, where)]
        else:
            raise ValidationError(
                f"{where}: role {role!r} is not supported by Anthropic models", param="messages"
            )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":  # tool_result blocks must come first in their user turn
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    if not turns:
        raise ValidationError(
            "messages must contain at least one user or assistant message", param="messages"
        )
    return system, turns


def _convert_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise ValidationError("tools must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise ValidationError(
                f"tools[{i}]: only function tools are supported by Anthropic models", param="tools"
            )
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValidationError(f"tools[{i}].function.name is required", param="tools")
        entry: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str) and fn["description"]:
            entry["description"] = fn["description"]
        params = fn.get("parameters")
        entry["input_schema"] = params if isinstance(params, dict) else {"type": "object", "properties": {}}
        out.append(entry)
    return out


def _convert_tool_choice(choice: Any) -> dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(fn, dict):
        if isinstance(fn.get("name"), str) and fn["name"]:
            return {"type": "tool", "name": fn["name"]}
    raise ValidationError(f"tool_choice {choice!r} is not supported by Anthropic models", param="tool_choice")


def _json_tool(body: dict[str, Any], name: str) -> dict[str, Any]:
    fmt = body["response_format"]
    if name == JSON_OBJECT_TOOL:
        schema: Any = {"type": "object"}
        description = "Give your final answer as a JSON object: this tool's input is the answer."
    else:
        spec = fmt["json_schema"]
        schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {"type": "object"}
        description = spec.get("description") if isinstance(spec.get("description"), str) else ""
        description = description or "Give your final answer through this tool: its input is the answer."
    return {"name": name, "description": description, "input_schema": schema}


def _int_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"{key} must be a positive integer", param=key)
    return value


def _in_tool_loop_or_prefill(turns: list[dict[str, Any]]) -> bool:
    """True when the request ends with an assistant prefill or answers tool calls (turns alternate)."""
    last = turns[-1]
    return last["role"] == "assistant" or any(b["type"] == "tool_result" for b in last["content"])


_SEARCH_USES = {"low": 1, "medium": 3, "high": 5}


def web_search_tool(options: Any) -> dict[str, Any] | None:
    """OpenAI's ``web_search_options`` as Anthropic's server web search tool (``search_context_size``
    low / medium / high -> at most 1 / 3 / 5 searches; ``user_location.approximate`` kept)."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValidationError("web_search_options must be an object", param="web_search_options")
    size = options.get("search_context_size") or "medium"
    if size not in _SEARCH_USES:
        raise ValidationError(
            "web_search_options.search_context_size must be low, medium or high",
            param="web_search_options.search_context_size",
        )
    tool: dict[str, Any] = {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": _SEARCH_USES[size],
    }
    location = options.get("user_location")
    approximate = location.get("approximate") if isinstance(location, dict) else None
    if isinstance(approximate, dict):
        fields = {
            k: v for k, v in approximate.items() if k in ("city", "region", "country", "timezone") and v
        }
        if fields:
            tool["user_location"] = {"type": "approximate", **fields}
    return tool


def build_request(
    body: dict[str, Any], upstream_model: str, *, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """Translate an OpenAI chat-completions body into an Anthropic Messages body (see module docstring)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise ValidationError("n>1 is not supported by Anthropic models", param="n")
    system, turns = _convert_messages(body.get("messages"))
    out: dict[str, Any] = {"model": upstream_model, "messages": turns}
    if any("cache_control" in block for block in system):
        out["system"] = system  # keep the client's prompt-caching breakpoints
    elif system:
        out["system"] = "\n\n".join(block["text"] for block in system)

    tools = _convert_tools(body["tools"]) if body.get("tools") else []
    choice = _convert_tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    json_tool = json_tool_name(body)
    if json_tool is not None:
        if any(t["name"] == json_tool for t in tools):
            raise ValidationError(
                f"response_format name {json_tool!r} collides with a tool of the same name",
                param="response_format",
            )
        if choice is None or choice["type"] == "auto":
            choice = {"type": "any"} if tools else {"type": "tool", "name": json_tool}
        elif choice["type"] == "none":  # client tools are off: only the answer tool remains
            tools, choice = [], {"type": "tool", "name": json_tool}
        tools.append(_json_tool(body, json_tool))
    search = web_search_tool(body.get("web_search_options"))
    if search is not None:
        tools.append(search)
    if tools:
        out["tools"] = tools
        if body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            out["tool_choice"] = choice

    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        out["stop_sequences"] = stops

    client_max = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens")
    max_tokens = client_max or default_max_tokens
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in THINKING_BUDGETS:
        raise ValidationError(
            f"reasoning_effort must be one of {', '.join(THINKING_BUDGETS)}", param="reasoning_effort"
        )
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    forced = "tool_choice" in out and out["tool_choice"]["type"] in ("any", "tool")
    if budget is not None and (forced or _in_tool_loop_or_prefill(turns)):
        budget = None
    if budget is not None:
        if client_max is None:
            max_tokens = budget + default_max_tokens
        elif client_max <= budget:
            budget = client_max - 1 if client_max - 1 >= MIN_THINKING_BUDGET else None
    out["max_tokens"] = max_tokens

    temperature, top_p = body.get("temperature"), body.get("top_p")
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if isinstance(top_p, int | float) and top_p >= 0.95:
            out["top_p"] = top_p
    else:
        if isinstance(temperature, int | float) and not isinstance(temperature, bool):
            out["temperature"] = max(0.0, min(float(temperature), 1.0))
        elif isinstance(top_p, int | float) and not isinstance(top_p, bool):
            out["top_p"] = top_p
        if isinstance(body.get("top_k"), int):
            out["top_k"] = body["top_k"]

    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out
