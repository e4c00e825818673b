"""Classification: pure logic behind ``/v1/classify``, ``/v1/tag``, their batch forms and saved classifiers.

- ``request``: wire validation (Classer-style 422 errors) into ``Spec`` (what to classify into) and inputs.
- ``prompts``: the label prompt templates the local backend embeds.
- ``scoring``: zero-shot scoring of embeddings against label vectors; calibrated probabilities.
- ``calibration``: fitting the temperature (single label) and Platt constants (multi-label).
- ``local``: the local backend (the bundled embedding model; label vectors cached per label set).
- ``llm``: the chat request an LLM backend answers, and reading its label and confidence back.
- ``documents``: PDF / DOCX text extraction per page; PDF and DOCX pages rendered to PNG for vision models.
- ``cache``: the cache key of a request (the entries live in the gateway's response cache).

Nothing here does network I/O or knows about HTTP (``local`` runs the in-process model);
``services/classification.py`` runs the pipeline.
"""
