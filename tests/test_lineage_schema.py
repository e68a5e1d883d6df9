"""schemas/lineage.schema.json is the lineage line's one definition, and the step constructors
of cqia/common/lineage.py are the only code that builds steps: what they build is valid, and
what they cannot build is not. (Every lineage line the pipeline writes is checked in the
process and end-to-end lanes: tests/test_reliability.py and conftest.release_lineage.)"""

from __future__ import annotations

import ast

import jsonschema
import orjson
import pytest

from cqia.common import lineage as L
from tests.conftest import ROOT, lineage_errors

RID = "zhihu-0123456789abcdef"
KEPT = "zhihu-fedcba9876543210"
SOURCE = {"file": "data/raw/zhihu/train.jsonl", "md5": "0" * 32, "line": 3, "raw_sha256": "a" * 64}


def line(steps, status="released", **extra):
    return {"id": RID, "status": status, "category": "zhihu", "source": SOURCE,
            "raw": {"问题": "什么是知乎？"}, "steps": steps, **extra}


ACCEPTED = [L.parse_step("cqia-jsonl", "jsonl"), L.map_step(["metadata"], ["extra"]),
            L.edit_step("normalize", "instruction", ["fullwidth_ascii"], "ＡＩ是什么", "AI是什么"),
            L.edit_step("mask", "output", ["phone"], "电话13800000000", "电话[PHONE]"),
            L.pass_step("rules"), L.review_step("accept", "wang.li", "", "2024-03-01", 2),
            L.pass_step("schema"), L.gate_step("default")]


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(orjson.loads((ROOT / L.SCHEMA_FILE).read_bytes()))


@pytest.mark.parametrize("entry", [
    line(ACCEPTED, status="accepted"),
    line(ACCEPTED + [L.dedup_pass_step()]),
    line(ACCEPTED + [L.dedup_pass_step([KEPT])]),
    line(ACCEPTED + [L.dedup_reject_step({"id": RID, "reason": f"duplicate_of:{KEPT}", "duplicate_of": KEPT})],
         status="rejected", reason=f"duplicate_of:{KEPT}", detail=f"same instruction, input and output as {KEPT}"),
    line(ACCEPTED + [L.dedup_reject_step({"id": RID, "reason": f"near_duplicate_of:{KEPT}", "near_duplicate_of": KEPT,
                                          "similarity": 0.9, "output_similarity": 0.95, "threshold": 0.8, "ngram": 5})],
         status="rejected", reason=f"near_duplicate_of:{KEPT}", detail="near duplicate"),
    line([L.parse_step("poison-mpts", "jsonl", "invalid_json", "unexpected character at column 3")],
         status="rejected", reason="invalid_json", detail="unexpected character at column 3"),
    line(ACCEPTED[:2] + [L.reject_step("rules", "too_short", "output has 3 characters, min_chars.output is 10")],
         status="rejected", reason="too_short", detail="output has 3 characters"),
    line(ACCEPTED[:5] + [L.reject_step("review", "review_pending", "only accepted records")],
         status="rejected", reason="review_pending", detail="only accepted records"),
], ids=["accepted", "released", "kept-with-near-dups", "duplicate", "near-duplicate", "unparsed", "rule", "pending"])
def test_what_the_constructors_build_is_valid(entry):
    assert lineage_errors(entry) == []


@pytest.mark.parametrize("entry, where", [
    (line([{"step": "translate", "result": "pass"}]), "$.steps[0]"),
    (line([L.pass_step("rules") | {"note": "x"}]), "$.steps[0]"),
    (line([L.reject_step("rules", "Too Short!", "x")], status="rejected", reason="too_short", detail="x"), "$.steps[0]"),
    (line([L.parse_step("x", "jsonl")], status="rejected"), "$"),                    # rejected without its reason
    (line([L.parse_step("x", "jsonl")], reason="too_short", detail=""), "$"),        # released with a reason
    (line([L.parse_step("x", "jsonl")], extra=1), "$"),
    (line([]), "$.steps"),
    ({**line([L.parse_step("x", "jsonl")]), "source": {"file": "f", "md5": "0" * 32, "line": 0}}, "$.source.line"),
])
def test_what_no_constructor_builds_is_invalid(entry, where):
    errors = lineage_errors(entry)
    assert errors and errors[0].startswith(where + ":"), errors


def test_steps_are_built_only_by_the_constructors():
    """No module but cqia/common/lineage.py writes a dict literal with a "step" key."""
    offenders = []
    for path in [*(ROOT / "cqia").rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        if path == ROOT / "cqia/common/lineage.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "step" for k in node.keys):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders


def test_the_sample_release_lineage_is_valid_when_built():
    """The workspace's release (after `make repro`): every line. Skipped on a clone not yet built."""
    lineage_dir = ROOT / "data/release/lineage"
    files = sorted(lineage_dir.glob("*/lineage.jsonl"))
    if not files:
        pytest.skip("no release built in this checkout (make repro)")
    bad = [(f.parent.name, n, lineage_errors(orjson.loads(raw)))
           for f in files for n, raw in enumerate(f.read_bytes().splitlines(), 1) if lineage_errors(orjson.loads(raw))]
    assert not bad
    assert sum(len(f.read_bytes().splitlines()) for f in files) > 0


def test_every_reason_code_is_listed_once_in_the_rules():
    """rules.REASONS is the list of reason codes: the lineage's and the docs' reasons come from it."""
    from cqia.ingest.rules import REASONS

    assert len(set(REASONS)) == len(REASONS)
    lineage_dir = ROOT / "data/release/lineage"
    seen = {orjson.loads(raw).get("reason", "").split(":")[0] for f in lineage_dir.glob("*/lineage.jsonl")
            for raw in f.read_bytes().splitlines()} - {""}
    assert seen <= set(REASONS)
    troubleshooting = (ROOT / "docs/troubleshooting.md").read_text(encoding="utf-8")
    assert [r for r in REASONS if f"`{r}" not in troubleshooting] == []

