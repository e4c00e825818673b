"""The one module that imports ``llama_cpp`` (imported lazily, so Tollgate runs without the extra).

``CountingLlama`` is llama-cpp-python's ``Llama`` with one hook: every generation goes through
``generate``, which we wrap to count the prompt tokens and the sampled tokens exactly (the model's own
tokenizer and sampler, not an estimate: llama-cpp-python reports no usage in streams) and to stop between
two tokens when the request was cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import Any, Protocol

import llama_cpp
import llama_cpp._logger as llama_logger
from llama_cpp import Llama

from tollgate.providers.local.engine import Cancelled

# llama.cpp logs every load to stderr through this logger; the gateway has its own log.
llama_logger.logger.setLevel(logging.CRITICAL)


class Counter(Protocol):
    """What a generation reports to: token counts, and whether to stop."""

    prompt_tokens: int
    completion_tokens: int

    def is_cancelled(self) -> bool: ...


class CountingLlama(Llama):
    counter: Counter | None = None

    def generate(
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        counter = self.counter
        prompt = list(tokens)
        if counter is not None:
            counter.prompt_tokens = len(prompt)
            counter.completion_tokens = 0
        vocab = self._model.vocab
        for token in super().generate(prompt, *args, **kwargs):
            if counter is not None:
                if counter.is_cancelled():
                    raise Cancelled
                # The end-of-generation token ends the completion; llama-cpp-python does not count it.
                if not llama_cpp.llama_vocab_is_eog(vocab, token):
                    counter.completion_tokens += 1
            yield token


def load(path: str, n_ctx: int) -> CountingLlama:
    return CountingLlama(model_path=path, n_ctx=n_ctx, verbose=False)
