"""What an error message must say, not how it says it."""

from __future__ import annotations


def says(text: str, facts: str | tuple[str, ...]) -> bool:
    """Whether `text` is one line that names every fact (a key, a value, a limit, a hint)."""
    facts = (facts,) if isinstance(facts, str) else facts
    return "\n" not in text.strip() and all(fact in text for fact in facts)
