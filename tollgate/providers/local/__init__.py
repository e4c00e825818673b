"""``kind: local``: models that run inside the gateway process (the ``tollgate[local]`` extra).

- ``client``: ``LocalProvider`` (chat via llama-cpp-python, embeddings via ``tollgate.local.embedder``) and
  ``LocalStream``.
- ``engine``: one loaded GGUF model per process, its worker thread and FIFO queue (the scheduling policy).
- ``request``: pure translation of OpenAI bodies (chat parameters, embeddings inputs and responses).
- ``llama``: the only module importing ``llama_cpp``, imported on first use.
"""

from tollgate.providers.local.client import LocalProvider

__all__ = ["LocalProvider"]
