"""``python -m tollgate.simulator``: run the provider simulator in the foreground."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from tollgate.simulator.behaviour import build_behaviour, parse_suffix
from tollgate.simulator.runner import serve


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, int, dict[str, Any]]:
    """Parse the command line into ``(host, port, default options)``."""
    parser = argparse.ArgumentParser(
        prog="python -m tollgate.simulator",
        description="Run the Tollgate provider simulator, an OpenAI-compatible upstream with fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--latency-ms", type=float, help="wait before sending response headers")
    parser.add_argument("--chunk-delay-ms", type=float, help="wait between stream chunks")
    parser.add_argument("--completion-tokens", type=int, help="completion length in tokens (default 20)")
    parser.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="any other default behaviour option, e.g. -o error=500 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    defaults: dict[str, Any] = {}
    for item in args.option:
        defaults.update(parse_suffix(item))
    for key in ("latency_ms", "chunk_delay_ms", "completion_tokens"):
        value = getattr(args, key)
        if value is not None:
            defaults[key] = value
    try:
        build_behaviour(defaults)
    except ValueError as exc:
        parser.error(str(exc))
    return args.host, args.port, defaults


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    host, port, defaults = parse_args(argv)
    serve(host, port, defaults)


if __name__ == "__main__":
    main()
