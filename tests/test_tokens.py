"""tollgate/tokens.py: local prompt counts frame the messages as each chat template family does."""

from __future__ import annotations

import pytest

from tollgate.tokens import count_messages, count_text

MSGS = [{"role": "user", "content": "What is 2+2?"}]
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.mark.parametrize(
    ("template", "framing"),
    [("openai", 3 + 3), ("chatml", 5 + 3), ("llama3", 1 + 5 + 4), ("gemma", 1 + 5 + 3)],
)
def test_each_template_adds_its_framing_tokens(template: str, framing: int) -> None:
    assert count_messages(MSGS, template) == count_text("What is 2+2?") + framing


def test_a_default_system_prompt_counts_only_when_the_request_has_none() -> None:
    with_default = count_messages(MSGS, "chatml", SYSTEM)
    assert with_default == count_messages(MSGS, "chatml") + 5 + count_text(SYSTEM)
    own = [{"role": "system", "content": "Be brief."}, *MSGS]
    assert count_messages(own, "chatml", SYSTEM) == count_messages(own, "chatml")
