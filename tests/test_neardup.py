"""Near-duplicate detection (cqia/dedup/neardup.py): correctness on known pairs, keep-first, determinism."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqia.common.errors import CqiaError
from cqia.dedup.neardup import (
    NearDupConfig,
    NearDupIndex,
    clusters,
    find_matches,
    ngram_hashes,
    record_texts,
    signature_pairs,
    signatures,
)
from tests.conftest import ROOT

PROMPT = "自闭症儿童能上普通学校吗？"
ANSWER_A = ("可以，但要看孩子的具体情况和学校能提供的支持。融合教育的理念是让有特殊需要的孩子尽可能在普通环境中学习，"
            "同时配备资源教室、影子老师或个别化教育计划。")
ANSWER_B = ("法律上，适龄残疾儿童享有接受义务教育的权利，学校不应仅以“有自闭症”为由直接拒收。现实中，家长常遇到的困难是"
            "班级人数多、老师缺乏培训、其他家长有顾虑。")
LONG_PROMPT = "请阅读下面这段关于城市交通拥堵治理的讨论，概括其中提到的三种主要措施，并说明你认为哪一种措施最有效、理由是什么。"


def rec(instruction: str, output: str, input: str = "") -> dict:
    return {"instruction": instruction, "input": input, "output": output}


def run(records: list[dict], config: NearDupConfig = NearDupConfig()) -> dict:
    index = NearDupIndex(config)
    index.add_records(records)
    return index.matches()


def test_punctuation_change_in_the_instruction_is_a_near_duplicate_of_the_first():
    records = [rec(PROMPT, ANSWER_A), rec(PROMPT, ANSWER_B), rec("自闭症儿童能上普通学校吗?", ANSWER_A)]
    matches = run(records)
    assert list(matches) == [2]
    assert matches[2].kept == 0
    assert matches[2].similarity >= 0.8 and matches[2].output_similarity == 1.0


def test_one_word_changed_in_the_output_is_a_near_duplicate():
    changed = ANSWER_A.replace("资源教室", "资源中心")
    matches = run([rec(PROMPT, ANSWER_A), rec(PROMPT, changed)])
    assert [(m.index, m.kept) for m in matches.values()] == [(1, 0)]
    assert 0.8 <= matches[1].output_similarity < 1.0


def test_repeated_prompt_with_different_answers_is_kept():
    # 100PoisonMpts repeats a prompt with several answers: all of them are distinct records.
    assert run([rec(PROMPT, ANSWER_A), rec(PROMPT, ANSWER_B)]) == {}


def test_long_shared_instruction_with_short_different_outputs_is_kept():
    # The whole record is mostly the shared instruction (whole-record similarity is high),
    # but the outputs differ, so the records are not near duplicates.
    first, second = rec(LONG_PROMPT, "我认为限行最有效。"), rec(LONG_PROMPT, "我认为发展公共交通最有效。")
    assert run([first, second]) == {}
    whole = signatures([record_texts(first)[0], record_texts(second)[0]], NearDupConfig())
    assert (whole[0] == whole[1]).mean() > 0.7          # the whole texts alone would have matched


def test_traditional_script_is_not_folded_here():
    # Script conversion (t2s) is a cleaning rule that runs in the category stage, before merge;
    # near-dup compares the normalised text as it is, so the traditional form is a different text.
    traditional = ("可以，但要看孩子的具體情況和學校能提供的支持。融合教育的理念是讓有特殊需要的孩子盡可能在普通環境中學習，"
                   "同時配備資源教室、影子老師或個別化教育計劃。")
    assert run([rec(PROMPT, ANSWER_A), rec("自閉症兒童能上普通學校嗎？", traditional)]) == {}


def test_keep_first_follows_input_order_not_hashes():
    variants = [rec(PROMPT, ANSWER_A), rec(PROMPT + " ", ANSWER_A + "。"), rec("自闭症儿童能上普通学校吗?", ANSWER_A)]
    forward = run(variants)
    assert {i: m.kept for i, m in forward.items()} == {1: 0, 2: 0}
    backward = run(list(reversed(variants)))
    assert {i: m.kept for i, m in backward.items()} == {1: 0, 2: 0}
    assert clusters(forward) == {0: [1, 2]}


def test_a_record_is_matched_only_to_kept_records():
    # b-bit signatures by hand: B differs from A in 20 of 128 places, C from B in 20 others.
    # A~B and B~C pass 0.8; A~C does not. B is dropped (near A), so C has no kept match and stays.
    config = NearDupConfig(threshold=0.8)
    a = np.zeros(128, dtype=np.uint8)
    b = a.copy()
    b[0:20] = 1                     # bands 0-2 differ, bands 3-15 shared with A
    c = b.copy()
    c[120:128] = 2                  # band 15 differs from B ...
    c[100:112] = 2                  # ... and bands 12-13; C and A agree on only 88 places
    whole = np.stack([a, b, c])
    output = np.zeros_like(whole)
    matches = find_matches(whole, output, config)
    assert {i: m.kept for i, m in matches.items()} == {1: 0}


def test_exact_duplicates_are_never_kept():
    index = NearDupIndex(NearDupConfig())
    index.add(*record_texts(rec(PROMPT, ANSWER_A)), exact_key=b"k" * 16)
    index.add(*record_texts(rec(PROMPT, ANSWER_A)), exact_key=b"k" * 16)
    index.add(*record_texts(rec("自闭症儿童能上普通学校吗?", ANSWER_A)), exact_key=b"x" * 16)
    matches = index.matches()
    assert {i: m.kept for i, m in matches.items()} == {2: 0}


@pytest.mark.process
def test_same_result_under_any_hash_seed():
    code = ("from cqia.dedup.neardup import *\n"
            "from tests.test_neardup import PROMPT, ANSWER_A, ANSWER_B, rec\n"
            "rs=[rec(PROMPT,ANSWER_A),rec(PROMPT,ANSWER_B),rec(PROMPT+'?',ANSWER_A),rec(PROMPT,ANSWER_B+'。')]\n"
            "i=NearDupIndex(NearDupConfig()); i.add_records(rs); print(sorted(i.matches().items()))\n")
    outs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
    assert "Match(index=2, kept=0" in outs.pop()


def test_ngrams_of_short_texts_and_at_text_boundaries():
    hashes, offsets = ngram_hashes(["ab", "好", "", "你好世界和平"], 5)
    assert offsets.tolist() == [0, 2, 3, 4, 10]          # one n-gram per character, at least one per text
    alone = [ngram_hashes([t], 5)[0].tolist() for t in ("ab", "好", "", "你好世界和平")]
    assert hashes.tolist() == sum(alone, [])             # no n-gram spans two texts
    assert len(set(hashes[4:].tolist())) == 6


def test_signatures_are_one_byte_per_permutation():
    sig = signatures(["你好世界", "再见"], NearDupConfig(num_perm=64, bands=8))
    assert sig.dtype == np.uint8 and sig.shape == (2, 64)


@pytest.mark.parametrize("block, message", [
    ({"threshold": 1.5}, "params.yaml: neardup: threshold is 1.5. Use a Jaccard similarity in (0, 1], e.g. 0.8"),
    ({"num_perm": 100, "bands": 16}, "params.yaml: neardup: num_perm 100 is not a multiple of bands 16. "
                                     "Choose bands that divide num_perm, e.g. num_perm 128 and bands 16"),
    ({"shingle": 5}, "params.yaml: neardup: unknown key(s) ['shingle']. Available keys: ['enabled', 'threshold', "
                     "'ngram', 'num_perm', 'bands', 'seed', 'max_candidates']"),
    ({"ngram": 0}, "params.yaml: neardup: ngram is 0. Use an integer >= 1"),
])
def test_config_errors(block, message):
    with pytest.raises(CqiaError) as err:
        NearDupConfig.from_params(block)
    assert str(err.value) == message


def test_benchmark_finds_the_planted_near_duplicates_and_nothing_else(capsys):
    from bench.bench_neardup import main

    assert main(["--n", "3000", "--seed", "3", "--threads", "0"]) == 0    # 0: leave the environment alone
    out = capsys.readouterr().out
    found = re.search(r"planted near duplicates found: (\d+)/(\d+)", out)
    assert int(found.group(2)) > 100 and int(found.group(1)) >= int(found.group(2)) - 2
    assert re.search(r"same instruction, different output, matched \(must be 0\): 0/\d+", out)
    assert "other matches (not planted): 0\n" in out
    assert re.search(r"= [\d,]+ documents/s", out)


# Letters whose lower case depends on what is around them or changes the length (Greek final sigma,
# dotted capital I), newlines, CJK, full-width letters, emoji: where the output's n-grams taken from
# the end of the whole text could differ from the output's own.
TRICKY = st.text(st.sampled_from(list("ΣσςİIiAa \n\x00自闭症儿童ＡＢ，。😀é") + ["\u0301", "\u2028"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TRICKY, TRICKY, TRICKY), min_size=1, max_size=6), st.sampled_from([1, 3, 5]))
def test_signature_pairs_equal_the_signatures_of_each_text_alone(parts, ngram):
    config = NearDupConfig(ngram=ngram, num_perm=16, bands=4)
    pairs = [record_texts(rec(instruction, output, input)) for instruction, input, output in parts]
    whole, output = signature_pairs(pairs, config)
    assert np.array_equal(whole, signatures([w for w, _ in pairs], config))
    assert np.array_equal(output, signatures([o for _, o in pairs], config))


def test_signature_pairs_of_nothing_and_of_real_length_records():
    config = NearDupConfig()
    assert [a.shape for a in signature_pairs([], config)] == [(0, 128), (0, 128)]
    pairs = [record_texts(rec(LONG_PROMPT * k, (ANSWER_A + ANSWER_B) * k, PROMPT)) for k in range(1, 40)]
    pairs.append(record_texts(rec(PROMPT, "")))             # an empty output: hashed alone
    whole, output = signature_pairs(pairs, config)
    assert np.array_equal(whole, signatures([w for w, _ in pairs], config))
    assert np.array_equal(output, signatures([o for _, o in pairs], config))
