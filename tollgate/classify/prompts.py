"""The label prompts the local backend embeds for each label.

A label arrives as an identifier as often as a phrase (``card_arrival``, ``lostCard``, ``ENTY:food``);
``label_name`` reads it as words (``card arrival``, ``lost card``, ``enty food``). A label's prompts are that
name alone and the name in each of ``TEMPLATES``, plus ``"{name}: {description}"`` when the request describes
the label; its zero-shot vector is the mean of their embeddings. ``text_type`` is not used: the template
"A {text_type} about {label}." the backend used to embed lost to the bare label name on every intent set
(``bench/classify.py``), and the ingredients kept are the ones that won on the fit sets.
"""

from __future__ import annotations

import re

TEMPLATES = ("a question about {name}",)
DESCRIBED = "{name}: {description}"

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[_\-.:/]+")


def label_name(label: str) -> str:
    """The label as words: camelCase and ``_ - . : /`` split, lower case when the label was an identifier."""
    words = _SEPARATORS.sub(" ", _CAMEL.sub(" ", label.strip()))
    name = " ".join(words.split())
    return name.lower() if name != label.strip() else name


def label_prompts(label: str, description: str | None) -> list[str]:
    """The texts embedded for one label; its vector is the mean of their embeddings."""
    name = label_name(label) or label
    prompts = [name] + [t.format(name=name) for t in TEMPLATES]
    if description and description.strip():
        prompts.append(DESCRIBED.format(name=name, description=description.strip()))
    return prompts
