"""Quality rules: pure checks that keep a record or drop it with a reason code.

Each rule takes the record's normalised fields and the category's `rules`
thresholds from params.yaml and returns None (keep) or (reason_code, detail).
Rules run in the order of RULES; the first that fires decides the reason.
"""

from __future__ import annotations

from typing import Any, Callable

Verdict = tuple[str, str] | None
TEXT_FIELDS = ("instruction", "input", "output")


def empty_fields(rec: dict[str, Any], cfg: dict[str, Any]) -> Verdict:
    for field in ("instruction", "output"):
        value = rec.get(field)
        if isinstance(value, str) and not value:
            return f"empty_{field}", f"{field} is empty after normalisation"
    return None


def length_bounds(rec: dict[str, Any], cfg: dict[str, Any]) -> Verdict:
    for field in TEXT_FIELDS:
        value = rec.get(field)
        if not isinstance(value, str):
            continue
        low = (cfg.get("min_chars") or {}).get(field)
        high = (cfg.get("max_chars") or {}).get(field)
        if low is not None and len(value) < low:
            return "too_short", f"{field} has {len(value)} characters, min_chars.{field} is {low}"
        if high is not None and len(value) > high:
            return "too_long", f"{field} has {len(value)} characters, max_chars.{field} is {high}"
    return None


def output_echoes_instruction(rec: dict[str, Any], cfg: dict[str, Any]) -> Verdict:
    out, ins = rec.get("output"), rec.get("instruction")
    if isinstance(out, str) and isinstance(ins, str) and out and out == ins:
        return "output_equals_instruction", "output is the instruction repeated"
    return None


RULES: dict[str, Callable[[dict[str, Any], dict[str, Any]], Verdict]] = {
    "empty_fields": empty_fields,
    "output_echoes_instruction": output_echoes_instruction,
    "length_bounds": length_bounds,
}

REASONS = (
    "invalid_utf8", "invalid_json", "not_an_object", "missing_field",
    "empty_instruction", "empty_output", "too_short", "too_long", "output_equals_instruction",
    "review_rejected", "review_pending", "schema_invalid", "duplicate_of",
)


def check(rec: dict[str, Any], cfg: dict[str, Any]) -> Verdict:
    for rule in RULES.values():
        verdict = rule(rec, cfg)
        if verdict:
            return verdict
    return None
