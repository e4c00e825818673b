"""Document work (text extraction, page rendering) in a child process with a deadline and a memory cap.

A crafted file can make pypdf, python-docx or pdfium run for minutes or allocate gigabytes. ``bounds.py``
refuses the known shapes of that before the work; this bounds whatever is left. Each job runs in a process of
its own, forked from multiprocessing's ``forkserver`` (a small process that imported the parsers once, so a
job starts in milliseconds and inherits nothing of the gateway: no event loop, sockets or model weights). The
job's address space is capped at ``max_memory_mb`` and its CPU at ``timeout`` seconds (``setrlimit``), and
the gateway kills it when ``timeout`` seconds of wall clock have passed or its request is cancelled. A thread
could be given a deadline but never stopped; a process can. At most ``workers`` jobs run at once; the others
wait for a slot.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import resource
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tollgate.classify.bounds import refuse, too_large
from tollgate.errors import TollgateError
from tollgate.settings import DocumentLimits

_CONTEXT = multiprocessing.get_context("forkserver")
# "__main__" first: the server imports the main module once, so that jobs do not each re-run it.
_PRELOAD = ["__main__", "tollgate.classify.documents", "pypdf", "docx", "pypdfium2"]


def _jobs() -> dict[str, Callable[[bytes, DocumentLimits], Any]]:
    from tollgate.classify import documents

    def render(data: bytes, limits: DocumentLimits) -> list[bytes]:
        if data.startswith(documents.PDF_MAGIC):
            return documents.render_pdf(data, limits)
        return documents.render_docx(data, limits)

    return {"pages": documents.extract_pages, "render": render}


def _child(conn: Connection, job: str, data: bytes, limits: DocumentLimits) -> None:
    """The job, in the child: limits first, then the work; the answer (or the refusal) goes to ``conn``."""
    memory = limits.max_memory_mb * 1_000_000
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = math.ceil(limits.timeout) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    answer: tuple[Any, ...]
    try:
        answer = ("ok", _jobs()[job](data, limits))
    except TollgateError as err:
        answer = ("refused", err.status, err.message)
    except MemoryError:
        answer = ("memory",)
    except Exception as exc:  # a parser failing in a way the checks did not foresee
        answer = ("failed", type(exc).__name__)
    conn.send(answer)
    conn.close()


class DocumentWorker:
    """Runs ``extract_pages`` and the page renderers in bounded child processes (see the module docstring)."""

    def __init__(self, limits: DocumentLimits) -> None:
        self.limits = limits
        self.jobs = 0  # documents handed to a worker process so far
        _CONTEXT.set_forkserver_preload(_PRELOAD)
        self._slots = asyncio.Semaphore(limits.workers)

    async def pages(self, data: bytes) -> list[str]:
        """The text of each page (``documents.extract_pages``), or its 413/422."""
        pages: list[str] = await self._job("pages", data)
        return pages

    async def render(self, data: bytes) -> list[bytes]:
        """Each page as a PNG (``render_pdf`` / ``render_docx``), or the 413/422 of a limit."""
        images: list[bytes] = await self._job("render", data)
        return images

    async def _job(self, job: str, data: bytes) -> Any:
        self.jobs += 1
        async with self._slots:
            holder: list[BaseProcess] = []
            try:
                return await asyncio.to_thread(self._run, job, data, holder)
            except asyncio.CancelledError:
                if holder:  # the request is gone: stop its work now (the thread then returns at once)
                    holder[0].kill()
                raise

    def _run(self, job: str, data: bytes, holder: list[BaseProcess]) -> Any:
        receiver, sender = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(target=_child, args=(sender, job, data, self.limits), daemon=True)
        try:
            process.start()
            holder.append(process)
            sender.close()
            if not receiver.poll(self.limits.timeout):
                raise refuse(f"Reading the document took longer than the limit of {self.limits.timeout:g} s")
            try:
                answer = receiver.recv()
            except EOFError:  # killed: past its CPU time (SIGXCPU), its memory, or its request was cancelled
                raise refuse(
                    f"Reading the document needs more than the limit of {self.limits.timeout:g} s of CPU "
                    f"or {self.limits.max_memory_mb} MB of memory"
                ) from None
        finally:
            if process.is_alive():
                process.kill()
            if holder:
                process.join()
            receiver.close()
        return _answer(answer, self.limits)


def _answer(answer: tuple[Any, ...], limits: DocumentLimits) -> Any:
    match answer:
        case ("ok", result):
            return result
        case ("refused", 413, message):
            raise too_large(message)
        case ("refused", _, message):
            raise refuse(message)
        case ("memory",):
            raise refuse(
                f"Reading the document needs more than the limit of {limits.max_memory_mb} MB of memory"
            )
        case _:
            raise refuse(f"The file is not a readable PDF or DOCX document ({answer[-1]})")
