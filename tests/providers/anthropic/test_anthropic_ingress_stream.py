"""OpenAI chunks -> Anthropic SSE events, checked against the official ``anthropic`` SDK's stream parser."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from tollgate.errors import UpstreamUnavailableError
from tollgate.providers.anthropic import MessagesStreamEncoder, StreamTranslator, sse_event
from tollgate.providers.anthropic.ingress_stream import matched_stop
from tollgate.providers.usage import Usage


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4.1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


TEXT_CHUNKS = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hello"}),
    _chunk({"content": "!"}),
    _chunk({}, "stop"),
]
TOOL_CHUNKS = [
    _chunk({"role": "assistant", "content": None}),
    _chunk({"content": "Let me check."}),
    _chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_weather",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
    _chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_time",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"timezone": "Europe/Paris"}'},
                }
            ]
        }
    ),
    _chunk({}, "tool_calls"),
]
USAGE = Usage(prompt_tokens=1200, completion_tokens=40, cached_tokens=1000, cache_write_tokens=150)


def _encode(chunks: list[dict[str, Any]], usage: Usage) -> list[tuple[str, dict[str, Any]]]:
    encoder = MessagesStreamEncoder(model="claude-sonnet-4-5", input_tokens=7)
    events = []
    for chunk in chunks:
        events += encoder.feed(chunk)
    return events + encoder.finish(usage)


def _sdk_stream(events: list[tuple[str, dict[str, Any]]]) -> anthropic.MessageStreamManager:
    """An official SDK client whose HTTP transport replays ``events`` as the response body."""
    body = b"".join(sse_event(name, data) for name, data in events)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = anthropic.Anthropic(
        api_key="sk-test",
        base_url="http://tollgate.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    return client.messages.stream(
        model="tollgate-claude", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )


def test_sse_event_frames_are_event_line_data_line_blank_line() -> None:
    assert (
        sse_event("message_stop", {"type": "message_stop"})
        == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_text_stream_has_the_documented_event_sequence() -> None:
    events = _encode(TEXT_CHUNKS, Usage(prompt_tokens=25, completion_tokens=15))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"] == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 0},
    }
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[2][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert events[5][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 15,
        },
    }


def test_official_sdk_accumulates_the_text_stream() -> None:
    with _sdk_stream(_encode(TEXT_CHUNKS, Usage(prompt_tokens=25, completion_tokens=15))) as stream:
        assert "".join(stream.text_stream) == "Hello!"
        message = stream.get_final_message()
    assert message.id == "msg_abc123" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 15)


def test_tool_calls_become_tool_use_blocks_with_input_json_deltas() -> None:
    events = _encode(TOOL_CHUNKS, USAGE)
    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert starts == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_weather", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "call_time", "name": "get_time", "input": {}},
    ]
    json_deltas = [
        (d["index"], d["delta"]["partial_json"])
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json_deltas == [(1, '{"location":'), (1, ' "Paris"}'), (2, '{"timezone": "Europe/Paris"}')]
    stops = [data["index"] for name, data in events if name == "content_block_stop"]
    assert stops == [0, 1, 2]


def test_official_sdk_parses_tool_use_inputs_stop_reason_and_cache_usage() -> None:
    with _sdk_stream(_encode(TOOL_CHUNKS, USAGE)) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check."  # type: ignore[union-attr]
    assert [(b.id, b.name, b.input) for b in message.content[1:]] == [  # type: ignore[union-attr]
        ("call_weather", "get_weather", {"location": "Paris"}),
        ("call_time", "get_time", {"timezone": "Europe/Paris"}),
    ]
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        50,
        1000,
        150,
    )
    assert usage.output_tokens == 40


def test_an_anthropic_stream_survives_translation_to_openai_and_back(load_sse: Any) -> None:
    translator = StreamTranslator(model="claude-sonnet", created=0, chunk_id="chatcmpl-rt")
    encoder = MessagesStreamEncoder(model="claude-sonnet-4-5")
    events: list[tuple[str, dict[str, Any]]] = []
    for name, data in load_sse("stream_tool_use.sse"):
        for chunk in translator.feed(name, data):
            events += encoder.feed(chunk)
    events += encoder.finish(translator.usage)
    with _sdk_stream(events) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "Okay, let's check the weather for San Francisco, CA:"  # type: ignore[union-attr]
    tool = message.content[1]
    assert (tool.id, tool.name, tool.input) == (  # type: ignore[union-attr]
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "get_weather",
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
    )
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 89)


def test_finish_without_chunks_still_yields_a_complete_empty_message() -> None:
    events = MessagesStreamEncoder(model="m", message_id="msg_empty").finish(Usage(prompt_tokens=3))
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    with _sdk_stream(events) as stream:
        message = stream.get_final_message()
    assert message.content == [] and message.id == "msg_empty"


def test_usage_only_chunks_are_remembered_and_feed_after_finish_is_ignored() -> None:
    encoder = MessagesStreamEncoder(model="m")
    encoder.feed(_chunk({"content": "x"}, "stop"))
    usage_chunk = {**_chunk({}), "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    assert encoder.feed(usage_chunk) == []
    assert encoder.usage == Usage(prompt_tokens=9, completion_tokens=2)
    assert [name for name, _ in encoder.finish(encoder.usage)][-1] == "message_stop"
    assert encoder.feed(_chunk({"content": "late"})) == [] and encoder.finish(encoder.usage) == []


def test_error_event_is_raised_by_the_official_sdk() -> None:
    encoder = MessagesStreamEncoder(model="m")
    events = encoder.feed(_chunk({"content": "partial"})) + encoder.error(
        UpstreamUnavailableError("Overloaded")
    )
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), _sdk_stream(events) as stream:
        stream.get_final_message()


@pytest.mark.parametrize(
    ("choice", "text", "expected"),
    [
        ({"finish_reason": "stop", "stop_reason": "END"}, "abc", "END"),  # vLLM's report
        ({"finish_reason": "stop"}, "the answer END", "END"),  # the upstream kept it in the text
        ({"finish_reason": "stop"}, "the answer", None),  # OpenAI drops it: not determinable
        ({"finish_reason": "length", "stop_reason": "END"}, "abc END", None),
        ({"finish_reason": "stop", "stop_reason": 50256}, "abc", None),  # a stop token id, not a sequence
    ],
)
def test_matched_stop_tells_which_stop_sequence_ended_the_choice(
    choice: dict[str, Any], text: str, expected: str | None
) -> None:
    assert matched_stop(choice, text, ["END", "STOP"]) == expected


def test_stream_encoder_reports_a_stop_sequence_the_text_ends_with() -> None:
    encoder = MessagesStreamEncoder(model="m", stops=["###"])
    for piece in ("one two #", "##"):
        encoder.feed(_chunk({"content": piece}))
    encoder.feed(_chunk({}, "stop"))
    delta = next(d for name, d in encoder.finish(Usage()) if name == "message_delta")["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
