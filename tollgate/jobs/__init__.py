"""Async batch classification jobs: NDJSON files of any size, classified in chunks, resumably.

- ``objects``: where the files live (one ``ObjectStore`` interface: a local directory, or an S3-compatible store).
- ``lines``: newline-aligned chunking of an input and line-by-line validation, in constant memory.
- ``store``: the ``batch_jobs`` / ``batch_chunks`` rows: claims with leases, checkpoints.
- ``service``: the API's operations (create, upload, start, status, list, results, cancel, delete).
- ``worker``: claims chunks, classifies them, and commits each chunk's results, counters and bill in one step.
"""
