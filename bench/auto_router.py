"""Build the bundled ``model: "auto"`` profile and measure it on held-out prompts (run by hand).

    .venv/bin/python bench/auto_router.py [--write]

The labelled set is ILLUSTRATIVE: prompts are generated from topic templates and each model's correctness
is drawn from a per-topic accuracy table below (a plausible shape: the tiny local model only handles small
talk; the hosted models differ by topic). It demonstrates the mechanism and gives the example config a
working default; an operator should train a profile on their own labels with
``python -m tollgate.routing.auto.train``. Prints the held-out quality retained and cost saved against
always using the strongest model, at several cost biases; ``--write`` stores the profile in the package.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np

from tollgate.local.embedder import MODEL_NAME, get_embedder
from tollgate.routing.auto.train import Row, evaluate, fit, split

OUT = Path(__file__).resolve().parents[1] / "tollgate" / "routing" / "auto" / "default_profile.json"

TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "code": (
        [
            "Write a {lang} function that {task}.",
            "Why does my {lang} code raise an error when it {task}?",
            "Refactor this {lang} class so that it {task}.",
            "Review this {lang} snippet that {task} and point out bugs.",
        ],
        ["parses a CSV file", "retries an HTTP request", "merges two sorted lists", "reads a config file",
         "caches results in memory", "validates an email address", "walks a directory tree"],
    ),
    "math": (
        [
            "Solve for x: {task}.",
            "Prove that {task}.",
            "Compute step by step: {task}.",
            "What is the probability that {task}?",
        ],
        ["3x + 7 = 22", "the sum of two even numbers is even", "the integral of x^2 from 0 to 3",
         "two dice sum to 8", "the derivative of sin(x) * x", "there are infinitely many primes",
         "a coin lands heads three times in a row"],
    ),
    "chat": (
        [
            "Hi! {task}",
            "Hey there, {task}",
            "Good morning :) {task}",
            "Thanks a lot! {task}",
        ],
        ["how are you today?", "what's your name?", "tell me a fun fact", "I'm bored, say something nice",
         "what's a good name for a cat?", "do you like music?", "have a great day"],
    ),
    "writing": (
        [
            "Write a {task} about autumn.",
            "Draft a {task} for our new product launch.",
            "Compose a {task} that apologises for a late delivery.",
            "Write a persuasive {task} about remote work.",
        ],
        ["short poem", "blog post", "cover letter", "press release", "formal email", "haiku", "speech"],
    ),
    "translate": (
        [
            "Translate into {lang}: {task}",
            "How do you say '{task}' in {lang}?",
            "Give the {lang} translation of: {task}",
        ],
        ["Where is the train station?", "The meeting is postponed until Monday.", "I would like a coffee.",
         "Please close the window.", "How much does this cost?", "We are open every day."],
    ),
    "facts": (
        [
            "Who {task}?",
            "Explain briefly when and why {task}.",
            "What do historians say about who {task}?",
        ],
        ["wrote the Origin of Species", "built the first printing press in Europe", "discovered penicillin",
         "was the first person in space", "painted the ceiling of the Sistine Chapel",
         "formulated the laws of motion"],
    ),
}  # fmt: skip
LANGS = ["Python", "Go", "TypeScript", "Rust", "French", "German", "Spanish", "Japanese"]

# Illustrative per-topic accuracy (see the module docstring).
ACCURACY: dict[str, dict[str, float]] = {
    "local/smollm2-135m-instruct": {"code": 0.05, "math": 0.05, "chat": 0.85, "writing": 0.3,
                                    "translate": 0.15, "facts": 0.2},
    "gemini-2.0-flash": {"code": 0.65, "math": 0.88, "chat": 0.9, "writing": 0.65, "translate": 0.9,
                         "facts": 0.88},
    "gpt-4o-mini": {"code": 0.8, "math": 0.72, "chat": 0.9, "writing": 0.85, "translate": 0.85,
                    "facts": 0.82},
    "claude-3-5-haiku": {"code": 0.93, "math": 0.9, "chat": 0.92, "writing": 0.92, "translate": 0.9,
                         "facts": 0.9},
}  # fmt: skip
# prompt + completion per token, as in tollgate/example_config.yaml
PRICES = {
    "local/smollm2-135m-instruct": Decimal("0"),
    "gemini-2.0-flash": Decimal("0.0000005"),
    "gpt-4o-mini": Decimal("0.00000075"),
    "claude-3-5-haiku": Decimal("0.0000048"),
}


def labelled_rows(seed: int = 11) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for topic, (templates, tasks) in TOPICS.items():
        for template in templates:
            for task in tasks:
                for lang in rng.choice(LANGS, 2, replace=False) if "{lang}" in template else [""]:
                    prompt = template.format(task=task, lang=lang)
                    for model, acc in ACCURACY.items():
                        rows.append(Row(prompt, model, bool(rng.random() < acc[topic])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help=f"store the profile as {OUT}")
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()
    embed = get_embedder().encode
    rows = labelled_rows()
    train, held = split(rows, 0.25)
    profile = fit(train, embed, k=args.k, name=MODEL_NAME)
    for bias in (0.0, 0.2, 0.5, 0.8, 1.0):
        r = evaluate(profile, held, embed, PRICES, bias)
        sys.stdout.write(
            f"cost_bias {bias:.1f}: quality retained {r.quality_retained:.1%}, cost saved {r.cost_saved:.1%} "
            f"vs {r.strongest} on {r.prompts} held-out prompts; picks {r.picks}\n"
        )
    if args.write:
        final = fit(rows, embed, k=args.k, name=MODEL_NAME)
        final.save(OUT)
        sys.stdout.write(f"wrote {OUT} ({final.k} clusters)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
