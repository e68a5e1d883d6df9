"""Words in messages, the same in every command and stage."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for one: "1 record", "2 records", "0 records"; `plural` for an
    irregular noun ("1 category", counted(2, "category", "categories"))."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
