"""OpenAI chat-completions request → Gemini ``GenerateContentRequest`` (pure, no I/O).

The model is not part of the body: it goes into the URL, see ``endpoint_path``. Authentication is the
``x-goog-api-key`` header, also the integrator's business.

Decisions taken from Google's API reference (``ai.google.dev/api``):

* Tool parameters go out as ``parametersJsonSchema`` and ``json_schema`` response formats as
  ``responseJsonSchema``: both take real JSON Schema (``additionalProperties``, ``$defs``/``$ref``,
  ``anyOf``…), "while the full JSON Schema may be sent, not all features are supported" (unsupported
  keywords are ignored). So schemas pass through unchanged, bar a root ``$schema`` declaration, which
  says nothing to Gemini. The older ``parameters`` / ``responseSchema`` fields take an OpenAPI 3.0
  subset and would need lossy rewriting; they are not used.
* ``reasoning_effort`` → ``thinkingConfig.thinkingBudget`` (``none``/``minimal`` 0, ``low`` 1024, ``medium``
  8192, ``high``/``xhigh`` 24576, Google's own OpenAI-compatibility mapping) with ``includeThoughts`` so the
  thought summaries come back as ``reasoning_content``. A budget of 0 turns thinking off and asks for no
  thoughts. Without ``reasoning_effort`` no ``thinkingConfig`` is sent and the model's default applies.
* ``stop`` takes at most 5 sequences (Gemini's limit); ``n`` → ``candidateCount`` only when it is not 1.
* ``web_search_options`` → the ``googleSearch`` grounding tool (its options have no Gemini counterpart).
* Ignored (no Gemini counterpart, or the gateway's concern): ``model``, ``stream``, ``stream_options``,
  ``user``, ``metadata``, ``store``, ``logit_bias``, ``logprobs``, ``top_logprobs``, ``parallel_tool_calls``,
  ``service_tier``, ``modalities``, ``audio``, ``prediction``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tollgate.errors import ValidationError
from tollgate.providers.gemini.messages import convert_messages

__all__ = ["MAX_STOP_SEQUENCES", "THINKING_BUDGETS", "build_request", "endpoint_path"]

MAX_STOP_SEQUENCES = 5
THINKING_BUDGETS: dict[str, int] = {
    "none": 0,
    "minimal": 0,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def endpoint_path(upstream_model: str, *, stream: bool) -> str:
    """Path (and query) of the Gemini method, e.g. ``/v1beta/models/gemini-2.5-flash:generateContent``.

    Streaming uses ``:streamGenerateContent?alt=sse``: server-sent events, one ``data:`` line per
    ``GenerateContentResponse``. ``models/…`` and ``tunedModels/…`` resource names are accepted as they are.
    """
    name = upstream_model.strip()
    if not name:
        raise ValueError("gemini: the upstream model name is empty")
    resource = name if name.startswith(("models/", "tunedModels/")) else f"models/{name}"
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/{quote(resource, safe='/-._~')}:{method}"


def build_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate an OpenAI chat-completions body into a Gemini ``generateContent`` body.

    Raises ``ValidationError`` (with ``param`` pointing at the offending field) for what Gemini cannot take.
    """
    system, contents = convert_messages(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system is not None:
        out["systemInstruction"] = system

    tools, tool_choice = body.get("tools"), body.get("tool_choice")
    if tools is None and body.get("functions") is not None:  # legacy `functions` / `function_call`
        functions = body["functions"]
        tools = (
            [{"type": "function", "function": f} for f in functions]
            if isinstance(functions, list)
            else functions
        )
        tool_choice = _legacy_choice(body.get("function_call"))
    declarations = _declarations(tools)
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    search = body.get("web_search_options")
    if search is not None:  # grounding with Google Search; its options have no Gemini counterpart
        if not isinstance(search, dict):
            raise ValidationError("web_search_options must be an object", param="web_search_options")
        out.setdefault("tools", []).append({"googleSearch": {}})
    tool_config = _tool_config(tool_choice, declarations)
    if tool_config is not None:
        out["toolConfig"] = tool_config

    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def _declarations(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ValidationError("tools must be an array", param="tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ValidationError(f"tools[{i}]: only function tools are supported", param=f"tools[{i}].type")
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise ValidationError(f"tools[{i}].function.name is required", param=f"tools[{i}].function.name")
        declaration: dict[str, Any] = {"name": name}
        description = function.get("description")
        if isinstance(description, str) and description:
            declaration["description"] = description
        parameters = function.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise ValidationError(
                    f"tools[{i}].function.parameters must be an object",
                    param=f"tools[{i}].function.parameters",
                )
            declaration["parametersJsonSchema"] = _json_schema(parameters)
        out.append(declaration)
    return out


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$schema"}


def _legacy_choice(function_call: Any) -> Any:
    if isinstance(function_call, dict) and "name" in function_call:
        return {"type": "function", "function": {"name": function_call["name"]}}
    return function_call


def _tool_config(choice: Any, declarations: list[dict[str, Any]]) -> dict[str, Any] | None:
    if choice is None:
        return None
    names = [d["name"] for d in declarations]
    if isinstance(choice, str) and choice in _MODES:
        if not names:
            if choice == "required":
                raise ValidationError("tool_choice 'required' needs tools", param="tool_choice")
            return None
        return {"functionCallingConfig": {"mode": _MODES[choice]}}
    function = (
        choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    )
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise ValidationError("tool_choice must be auto, none, required or a function", param="tool_choice")
    if name not in names:
        raise ValidationError(
            f"tool_choice names {name!r}, which is not among the tools", param="tool_choice"
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _number(body: dict[str, Any], key: str, *, integer: bool = False) -> int | float | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise ValidationError(f"{key} must be {'an integer' if integer else 'a number'}", param=key)
    return value


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, field, integer in (
        ("temperature", "temperature", False),
        ("top_p", "topP", False),
        ("top_k", "topK", True),
        ("seed", "seed", True),
        ("presence_penalty", "presencePenalty", False),
        ("frequency_penalty", "frequencyPenalty", False),
    ):
        value = _number(body, key, integer=integer)
        if value is not None:
            config[field] = value

    max_tokens = _number(body, "max_completion_tokens", integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", integer=True)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    n = _number(body, "n", integer=True)
    if n is not None and n != 1:
        config["candidateCount"] = n

    stop = _stop_sequences(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    config.update(_response_format(body.get("response_format")))
    thinking = _thinking(body.get("reasoning_effort"))
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise ValidationError("stop must be a string or an array of strings", param="stop")
    sequences = [s for s in sequences if s]
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise ValidationError(
            f"stop takes at most {MAX_STOP_SEQUENCES} sequences with this model", param="stop"
        )
    return sequences


def _response_format(fmt: Any) -> dict[str, Any]:
    if fmt is None:
        return {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is not None and not isinstance(schema, dict):
            raise ValidationError(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if schema is not None:
            out["responseJsonSchema"] = _json_schema(schema)
        return out
    raise ValidationError(
        "response_format.type must be text, json_object or json_schema", param="response_format"
    )


def _thinking(effort: Any) -> dict[str, Any] | None:
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        allowed = ", ".join(THINKING_BUDGETS)
        raise ValidationError(f"reasoning_effort must be one of {allowed}", param="reasoning_effort")
    budget = THINKING_BUDGETS[effort]
    if budget == 0:
        return {"thinkingBudget": 0}
    return {"thinkingBudget": budget, "includeThoughts": True}
