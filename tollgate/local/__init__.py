"""Models that run inside the gateway process, shipped as Python packages (the ``tollgate[local]`` extra).

- ``bundled``: where the packaged models live (SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2), found without
  importing their packages and without any network access.
- ``embedder``: the process-wide sentence embedder (all-MiniLM-L6-v2), shared by ``/v1/embeddings`` and the
  local classifier.

The chat side (llama-cpp-python) lives in ``tollgate.providers.local``.
"""
