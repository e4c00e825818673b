"""``GET /healthz``: liveness plus the state of the usage writer and its journal."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollgate import __version__
from tollgate.api.http import json_response


async def healthz(request: Request) -> Response:
    writer = request.app.state.writer
    journal = writer.journal
    uncharged = request.app.state.ledger.uncharged.to_json()  # costs beyond balance + grace (balances.py)
    return json_response(
        orjson.dumps(
            {
                "status": "ok",
                "version": __version__,
                "usage_rows_pending": writer.pending,
                "usage_rows_rejected": writer.rejected,
                "usage_backpressure": not writer.has_room,
                "journal": journal.state() if journal is not None else None,
                "uncharged": uncharged,
                "invalid_key_attempts": request.app.state.completions.auth.invalid_attempts,
            }
        )
    )
