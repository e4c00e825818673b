"""One GGUF chat model in this process: loaded once, fed by one worker thread, FIFO.

Scheduling policy. A llama.cpp context holds one sequence, so a model generates for one request at a time;
requests wait in arrival order (FIFO) in the queue of the model's single worker thread, and nothing can jump
it. What keeps a long generation from starving the others is a bound on each one, not pre-emption:

- a request generates at most ``max_tokens`` (capped by the context window) and is cancelled, between two
  tokens, the moment its client disconnects or its time limit passes, including while it waits in the queue;
- at most ``max_queue`` requests may wait; past that the provider answers 503 at once, so the router can try
  another deployment instead of queueing behind a long generation.

Tokens go from the worker thread to the event loop through an ``asyncio.Queue`` (``call_soon_threadsafe``),
so the loop never blocks on generation. The model is loaded lazily, by the worker thread, on the first
request (≈ 0.2 s for SmolLM2-135M); engines are shared per (path, n_ctx) by every provider of the process.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tollgate.errors import UpstreamUnavailableError


class Cancelled(Exception):
    """Raised inside the generation loop (``llama.CountingLlama``) when its request was cancelled."""


class End:
    """The last item of a job's queue: the generation finished."""


END = End()


class Job:
    """One request to the model. Counters are written by the worker thread; the event loop reads them
    after it received ``END`` (items cross threads through the loop, which orders them)."""

    def __init__(self, kwargs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.kwargs = kwargs
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.started = False
        self._cancelled = threading.Event()

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def emit(self, item: Any) -> None:
        """Hand one item to the event loop (from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel()


class ChatEngine:
    def __init__(self, path: str, n_ctx: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self._llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-llama")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Requests waiting or running."""
        return self._pending

    def llm(self) -> Any:
        """The loaded ``CountingLlama`` (loads it; call from the worker thread or before serving)."""
        if self._llm is None:
            from tollgate.providers.local.llama import load

            self._llm = load(self.path, self.n_ctx)
        return self._llm

    def submit(self, kwargs: dict[str, Any], *, max_queue: int, provider: str) -> Job:
        """Queue a generation (``kwargs`` for ``create_chat_completion``); results arrive on ``job.queue``:
        the response (JSON) or each chunk (stream), then ``END``, or an exception."""
        with self._lock:
            if self._pending > max_queue:
                raise UpstreamUnavailableError(
                    f"{provider}: the local model is busy ({self._pending - 1} requests waiting, "
                    f"max_queue {max_queue})"
                )
            self._pending += 1
        job = Job(kwargs, asyncio.get_running_loop())
        self._executor.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        llm: Any = None
        last: Any = None  # handed over only once this job no longer counts as pending
        try:
            if job.is_cancelled():
                return
            job.started = True
            llm = self.llm()
            llm.counter = job
            if job.kwargs.get("stream"):
                for chunk in llm.create_chat_completion(**job.kwargs):
                    job.emit(chunk)
                last = END
            else:
                last = llm.create_chat_completion(**job.kwargs)
        except Cancelled:
            pass  # nobody is waiting for the answer
        except Exception as exc:  # handed to the request, which maps it into the error tree
            last = exc
        finally:
            if llm is not None:
                llm.counter = None
            with self._lock:
                self._pending -= 1
            if last is not None:
                job.emit(last)


_engines: dict[tuple[str, int], ChatEngine] = {}
_engines_lock = threading.Lock()


def get_engine(path: str, n_ctx: int) -> ChatEngine:
    """The process-wide engine of one model file (one load, one worker thread, however many providers)."""
    key = (path, n_ctx)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = ChatEngine(path, n_ctx)
        return engine
