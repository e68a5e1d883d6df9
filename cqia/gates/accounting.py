"""The accounting gate: nothing is lost. A whole (raw records, accepted records) must equal the
sum of its parts (accepted + rejected, released + duplicates); otherwise the stage fails and
writes nothing. The category, publish and merge stages each check their own sum with it."""

from __future__ import annotations

from cqia.common.errors import GateFailed

LABELS = {"raw": "raw records", "duplicates": "duplicates"}


def check_accounting(whole: str, count: int, parts: dict[str, int], where: str, fix: str | None = None) -> dict:
    """{whole: count, **parts, "success": True}, or GateFailed naming every number."""
    if count != sum(parts.values()):
        said = " + ".join(f"{n} {LABELS.get(k, k)}" for k, n in parts.items())
        raise GateFailed(f"accounting gate failed: {count} {LABELS.get(whole, whole)} but {said}", where=where, fix=fix)
    return {whole: count, **parts, "success": True}
