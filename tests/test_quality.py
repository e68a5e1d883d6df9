"""The evaluation set (tests/quality/records.yaml): every record gets the decision it is labelled with.

Each record is judged by the category core with the zhihu category's params, as the release is.
A record marked `known_miss` is one the rules get wrong today: the test asserts it still is, so a
change that fixes it says so and the mark comes off (docs/rules.md lists them).
"""

from collections import Counter
from pathlib import Path

import pytest
from quality.evaluate import KEEP, judge, load, scores

from cqia.common.params import load_yaml
from cqia.ingest.rules import REASONS

ROOT = Path(__file__).resolve().parent.parent
RECORDS = load()


@pytest.fixture(scope="module")
def verdicts():
    return {v.id: v for v in judge(RECORDS, load_yaml(ROOT / "params.yaml"))}


def test_the_set_is_large_labelled_and_covers_every_rule_it_tests():
    assert len(RECORDS) >= 200
    assert len({r["id"] for r in RECORDS}) == len(RECORDS)
    labels = Counter(r["label"] for r in RECORDS)
    assert set(labels) <= {KEEP, *REASONS}
    for reason in ("invisible_chars", "mojibake", "low_cjk_ratio", "repeated_chars", "repeated_lines",
                   "output_echoes_instruction", "output_equals_instruction", "too_short"):
        assert labels[reason] >= 4, reason
    assert labels[KEEP] >= 100
    assert all(r.get("why") for r in RECORDS)


@pytest.mark.parametrize("entry", RECORDS, ids=[r["id"] for r in RECORDS])
def test_every_record_gets_its_label(entry, verdicts):
    verdict = verdicts[entry["id"]]
    if entry.get("known_miss"):
        assert verdict.got != entry["label"], f"{entry['id']} is right now: remove its known_miss"
        return
    assert verdict.got == entry["label"], verdict.detail
    for field, text in (entry.get("expect") or {}).items():
        assert verdict.record[field] == text


def test_scores_count_each_decision_once(verdicts):
    table = {s.label: s for s in scores(list(verdicts.values()))}
    assert sum(s.support for s in table.values()) == sum(s.predicted for s in table.values()) == len(RECORDS)
    misses = sum(1 for r in RECORDS if r.get("known_miss"))
    assert sum(s.correct for s in table.values()) == len(RECORDS) - misses
