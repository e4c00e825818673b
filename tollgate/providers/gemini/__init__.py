"""Google Gemini (``generativelanguage.googleapis.com``) adapter: pure translators, no I/O.

Integration, all from Google's API reference:

* ``POST {base}/v1beta/models/{model}:generateContent`` or ``:streamGenerateContent?alt=sse`` (see
  ``endpoint_path``), base ``https://generativelanguage.googleapis.com``.
* Auth: header ``x-goog-api-key: <key>`` (the ``?key=`` query parameter also works but leaks into logs).
* ``Content-Type: application/json``; body from ``build_request``.
* 2xx JSON → ``to_openai_response``; SSE ``data:`` payloads → ``StreamTranslator.feed``; non-2xx →
  ``map_error(status, body, retry_after_header)``.
"""

from tollgate.providers.gemini.errors import map_error, map_error_payload
from tollgate.providers.gemini.messages import SKIP_THOUGHT_SIGNATURE
from tollgate.providers.gemini.request import THINKING_BUDGETS, build_request, endpoint_path
from tollgate.providers.gemini.response import finish_reason, to_openai_response, usage_from_gemini
from tollgate.providers.gemini.stream import StreamTranslator

__all__ = [
    "SKIP_THOUGHT_SIGNATURE",
    "THINKING_BUDGETS",
    "StreamTranslator",
    "build_request",
    "endpoint_path",
    "finish_reason",
    "map_error",
    "map_error_payload",
    "to_openai_response",
    "usage_from_gemini",
]
