"""The label prompts the local backend embeds: what a text of each label would say about itself.

A bare label ("billing") is a poor sentence to embed; a templated one ("A support ticket about billing.") sits
closer to real texts of that label in the embedding space. ``text_type`` names the kind of text, and a
label's description, when given, is embedded as a second prompt of that label.
"""

from __future__ import annotations

TEMPLATE = "{article} {kind} about {label}."
DESCRIBED = "{article} {kind} about {label}: {description}"


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def label_prompts(label: str, description: str | None, text_type: str | None) -> list[str]:
    """One or two prompts per label; the label's vector is built from all of them."""
    kind = (text_type or "text").strip()
    prompts = [TEMPLATE.format(article=_article(kind), kind=kind, label=label)]
    if description:
        prompts.append(
            DESCRIBED.format(article=_article(kind), kind=kind, label=label, description=description.strip())
        )
    return prompts
