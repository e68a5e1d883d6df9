"""Lineage format 2 (issue 16, decision 1): normalize and mask steps store what changed, and the
text before and after each step is rebuilt from the raw record and the edits, exactly.

The property tests round-trip any texts; the sample test judges every raw record of the
sample categories and checks, step by step, that what `cqia lineage` rebuilds is what the
judge had in hand (the old format's `before` and `after`)."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generate import generate
from cqia.common import lineage as L
from cqia.common.params import load_yaml
from cqia.gates.schema import RecordSchema
from cqia.ingest import judge
from cqia.ingest.config import checked_category, load_checked_categories
from cqia.ingest.decisions import load_decisions
from cqia.ingest.formats import FORMATS, edit_base
from cqia.ingest.judge import Processor, Source
from cqia.ingest.raw import RawItems
from cqia.registry.audit import readable_steps
from tests.conftest import ROOT, lineage_errors

# Texts like the registry's: CJK, full-width forms, traditional characters, white space, emoji.
ALPHABET = st.sampled_from(list("的一是不了人我在有ＡＩ２０ａｂAI20ab們這來說，。？！ 　\n\r\t\u200b\u2028😀[]EMAIL"))
TEXT = st.text(ALPHABET, max_size=60) | st.text(max_size=30)


def mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for at, cut, new in edits:
        at = min(at, len(text))
        text = text[:at] + new + text[at + cut:]
    return text


@st.composite
def before_after(draw):
    before = draw(TEXT)
    if draw(st.booleans()):
        return before, draw(TEXT)                                  # unrelated texts
    edits = draw(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 4), st.text(ALPHABET, max_size=4)), max_size=5))
    return before, mutate(before, edits)                          # a few local changes, as rules make


@given(before_after())
@settings(max_examples=400, deadline=None)
def test_the_edits_rebuild_the_text_after(pair):
    before, after = pair
    edits = L.text_edits(before, after)
    assert L.apply_edits(before, edits) == after
    assert (edits == []) == (before == after)
    starts = [e[0] for e in edits]
    assert starts == sorted(starts) and all(e[1] != e[2] for e in edits)


FIELDS = ("instruction", "input", "output")


@given(st.dictionaries(st.sampled_from(FIELDS), TEXT),
       st.lists(st.tuples(st.sampled_from(("normalize", "mask")), st.sampled_from(FIELDS), before_after(),
                          st.booleans()), max_size=6))
@settings(max_examples=300, deadline=None)
def test_stored_steps_expand_to_the_old_before_and_after(base, changes):
    """Any chain of edit steps over any base texts: stored, then expanded, gives each step's texts back.

    A step either continues its field (its before is the field as the previous step left it)
    or starts from a text the reader cannot know (then `before` is stored)."""
    current, steps = dict(base), [L.parse_step("cqia-jsonl", "jsonl")]
    for kind, field, (before, after), continues in changes:
        if continues and field in current:
            before = current[field]
        steps.append(L.edit_step(kind, field, ["fullwidth_ascii"], before, after))
        current[field] = after
    steps.append(L.pass_step("rules"))
    stored = copy.deepcopy(steps)
    L.store_edits(stored, base)
    assert all("after" not in s for s in stored)
    expanded = L.expand_edits(stored, base)
    assert [{k: v for k, v in s.items() if k != "edits"} for s in expanded] == steps
    line = {"id": "zhihu-0123456789abcdef", "status": "accepted", "category": "zhihu",
            "source": {"file": "f", "md5": "0" * 32, "line": 1}, "raw": {}, "steps": stored}
    assert lineage_errors(line) == []


def test_format_1_steps_are_read_as_they_are():
    step = L.edit_step("normalize", "instruction", ["fullwidth_ascii"], "ＡＩ是什么", "AI是什么")
    found = {"steps": [L.parse_step("poison-mpts", "jsonl"), step], "raw": {"prompt": "ＡＩ是什么", "answer": "x"}}
    assert readable_steps(found) == found["steps"]
    assert lineage_errors({"id": "zhihu-0123456789abcdef", "status": "accepted", "category": "zhihu",
                           "source": {"file": "f", "md5": "0" * 32, "line": 1}, "raw": {}, "steps": [step]}) == []


def test_a_stored_step_is_smaller_and_a_broken_one_is_shown_as_stored():
    text = "可以，但要看孩子的具体情况。" * 20
    step = L.edit_step("normalize", "output", ["fullwidth_ascii"], text + "ＡＩ", text + "AI")
    stored = [copy.deepcopy(step)]
    L.store_edits(stored, {"output": text + "ＡＩ"})
    assert stored == [{"step": "normalize", "field": "output", "rules": ["fullwidth_ascii"],
                       "edits": [[len(text), "ＡＩ", "AI"]]}]
    assert len(orjson.dumps(stored[0])) < len(orjson.dumps(step)) / 10
    broken = {"steps": [L.parse_step("poison-mpts", "jsonl"), stored[0]], "raw": {"prompt": "q", "answer": "other"}}
    assert readable_steps(broken) == broken["steps"]        # edits that do not apply: the steps as stored


def judged(monkeypatch, categories):
    """(lineage as stored, the steps as the judge had them, base texts) of every raw record with an edit
    step, for `categories`: (category, raw directory, review decisions)."""
    seen = []
    real = judge.store_edits

    def recording(steps, base):
        seen.append(copy.deepcopy(steps))
        real(steps, base)

    monkeypatch.setattr(judge, "store_edits", recording)
    schema = RecordSchema.from_file(ROOT / "schemas" / "record.schema.json")
    out = []
    for category, raw_dir, decisions in categories:
        processor = Processor(category, schema, decisions)
        for name in category.raw:
            path = raw_dir / name
            for outcome in processor.process(Source(path.as_posix(), "0" * 32), RawItems(path, FORMATS[category.format])):
                steps = outcome.lineage["steps"]
                if any(L.is_edit(s) for s in steps):
                    base = edit_base(category.format, steps[0]["layout"], outcome.lineage["raw"])
                    out.append((outcome.lineage, seen[-1], base))
    return out


def sample_categories():
    for category in load_checked_categories(load_yaml(ROOT / "params.yaml")):
        reviews = ROOT / "data" / "reviews" / f"{category.name}.jsonl"
        decisions = load_decisions(reviews.read_bytes().splitlines(), str(reviews)) if reviews.is_file() else {}
        yield category, ROOT / "data" / "raw" / category.name, decisions


def generated_categories(root):
    for spec in generate(root, 2400, 4, seed=3, clusters=0.3):
        entry = spec.params_entry()
        entry["rules"] = {**entry["rules"], "pii": {"email": "mask", "phone": "mask", "qq": "mask", "id_card": "reject"}}
        entry["normalize"] = {"fullwidth_ascii": True, "traditional_to_simplified": "t2s"}
        yield checked_category(spec.name, entry), root / spec.name, {}


@pytest.mark.parametrize("source", ["sample", "generated"])
def test_every_edit_step_is_rebuilt_exactly(source, monkeypatch, tmp_path):
    outcomes = judged(monkeypatch, sample_categories() if source == "sample" else generated_categories(tmp_path))
    assert len(outcomes) >= (5 if source == "sample" else 500)
    kinds = set()
    for lineage, full, base in outcomes:
        rebuilt = readable_steps(lineage)
        assert [{k: v for k, v in s.items() if k != "edits"} for s in rebuilt] == full, lineage["id"]
        assert L.expand_edits(lineage["steps"], base) == rebuilt
        assert lineage_errors(lineage) == []
        kinds |= {s["step"] for s in lineage["steps"] if L.is_edit(s)}
        # stored steps carry the text before only when the raw record cannot give it
        assert all("before" not in s for s in lineage["steps"] if L.is_edit(s) and "redacted" not in lineage)
    assert "normalize" in kinds           # mask steps: tests/test_records.py (PII forms) and the property test


@pytest.mark.parametrize("field", FIELDS)
def test_the_base_is_the_field_the_format_maps(field):
    raw = {"instruction": "问", "input": "", "output": "答", "answer_from": "human"}
    assert edit_base("cqia-jsonl", "jsonl", raw)[field] == raw[field]
    assert edit_base("cqia-jsonl", "jsonl", "not json") == {} and edit_base("nope", "jsonl", raw) == {}


def test_cqia_lineage_shows_a_format_1_step_and_a_format_2_step_alike():
    from cqia.cli.audit import _step_line

    raw = {"prompt": "ＡＩ是什么", "answer": "答"}
    old = {"steps": [L.parse_step("poison-mpts", "jsonl"),
                     L.edit_step("normalize", "instruction", ["fullwidth_ascii"], "ＡＩ是什么", "AI是什么")], "raw": raw}
    new = {"steps": copy.deepcopy(old["steps"]), "raw": raw}
    L.store_edits(new["steps"], edit_base("poison-mpts", "jsonl", raw))
    assert "after" not in new["steps"][1]
    assert [_step_line(s) for s in readable_steps(old)] == [_step_line(s) for s in readable_steps(new)]
    assert _step_line(readable_steps(new)[1]) == "normalize  instruction [fullwidth_ascii]: ＡＩ是什么 → AI是什么"


@pytest.mark.parametrize("before, after", [
    ("说" * 30 + "ＡＢＣＤＥＦＧＨＩＪＫＬＭＮ" + "说" * 30, "说" * 30 + "ABCDEFGHIJKLMN" + "说" * 30),   # a long folded run
    ("说" * 30 + "，" * 40 + "说" * 600, "说" * 30 + "说" * 600),                                  # a long deletion
    ("的一是" * 300, "是的一" * 290 + "不了"),                                                     # nothing agrees nearby
])
def test_edits_of_long_and_scattered_changes_rebuild_the_text(before, after):
    edits = L.text_edits(before, after)
    assert L.apply_edits(before, edits) == after
    assert sum(len(e[1]) + len(e[2]) for e in edits) <= len(before) + len(after)
