"""Synthetic raw data for the benchmark, in every raw format the registry reads.

    python -m bench.generate --records 100000 --categories 12 --seed 0 --out /tmp/raw

writes `<out>/<category>/<raw files>` and prints the categories' params
entries. Nothing is copied from a real dataset: every character comes out of
the seeded generator below, so the same (records, categories, seed) gives the
same bytes on any machine.

What the data looks like, per category:

* the upstream byte layout of its format: `poison-mpts` and `cqia-jsonl` as
  JSON Lines written like Python's `json.dumps(ensure_ascii=False)`;
  `coig-human-value` as part 1, an indented JSON array that starts with a BOM,
  and part 2, JSON Lines in the exam layout (a third of the category);
* Chinese text from a Zipf-distributed vocabulary of made-up words, with
  CJK punctuation and paragraphs; lengths are log-normal (an answer's median
  is a few hundred characters, about 2 KB per record on average);
* the mess the cleaning steps exist for: full-width letters and digits,
  traditional characters, CRLF, U+2028, zero-width spaces, emoji;
* exact duplicates (byte-identical lines, copies that differ only in
  surrounding white space, copies of another category's record), near
  duplicates (a few characters edited) and bad records (empty, too short,
  echoing the instruction, a missing field, a wrong type, broken JSON).

`--clusters SHARE` (e.g. 0.3) makes a duplication-heavy corpus, as real data
is: that share of each category's records are members of near-duplicate
clusters of 2 to 50 members (sizes uniform; members spread through the file,
each a variant of the cluster's first record: OCR-like noise, or a templated
rewording). `--clusters 0`, the default, writes the same bytes as before.

`generate()` returns what it wrote, including how many records of each kind,
so a caller can check the pipeline's counts against it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

FORMATS = ("cqia-jsonl", "poison-mpts", "coig-human-value")
BOM = "\ufeff"
BATCH = 4096

# Characters the made-up words are built from: common simplified characters,
# a few traditional ones (rare), all chosen for this generator.
_COMMON = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出会也时要就可以对生能而那得于着下自之"
    "年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理"
    "心她本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高"
    "间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老"
    "给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女"
    "变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保至队形"
    "社便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品住告类求据程"
    "北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持组每"
    "济车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质"
    "团集百需价花党华城石级整府离况亚请技际约示复病息究线似官火断精满支视消越器容照须九增研写称"
    "企八功吗包片史委乎查轻易早曾除农找装广显吧阿李标谈吃图念六引历首医局突专费号尽另周较注语仅"
    "考落青随选列武红响虽推势参希古众构房半节土投某案黑维革划敌致陈律足态护七兴派孩验责营星够章"
    "音跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察母京段依批群项故按河米围江织害斗双境客纪"
    "采举杀攻父苏密低朝友诉止细愿千值仍男钱破网热助倒育属坐帝限船脸职速刻乐否刚威毛状率甚独球般"
    "普怕弹校苦创假久错承印晚兰试股拿脑预谁益阳若哪微尼继送急血惊伤素药适波夜省初喜卫源食险待述"
)
_FUNCTION_WORDS = ("的", "是", "了", "在", "我", "有", "不", "这", "人", "一个", "我们", "就", "也", "和", "你",
                   "他", "都", "可以", "没有", "什么", "自己", "如果", "因为", "所以", "但是", "还是", "已经")
_TRADITIONAL = "們這來說時會個國學對發後過還為當經應點題區體與從"
_FULLWIDTH_TOKENS = ("ＡＩ", "２０２３", "ＧＰＴ", "１０", "ＰＤＦ", "Ｗｉｎｄｏｗｓ")
_ASCII_TOKENS = ("AI", "2023", "Python", "5G", "PPT", "APP", "CPU", "3.5", "100", "iPhone")
_ODD_TOKENS = ("\u2028", "\u200b", "😀", "👍", "\r\n")
_PUNCT = ("，", "。", "、", "；", "？", "！", "：", "\n\n")
_PUNCT_WEIGHTS = (0.085, 0.045, 0.012, 0.004, 0.004, 0.003, 0.004, 0.006)

TASK_MAJOR = ("问答", "生成", "分类", "摘要", "翻译", "试题", "改写")
TASK_MINOR = ("知乎问答", "经验分享", "百科问答", "写作", "选择题", "阅读理解", "情感分析", "代码")
DOMAINS = ("职场", "美食", "教育", "医疗", "法律", "金融", "科技", "历史", "体育", "旅行", "育儿", "心理")
POISON_DOMAINS = (("自闭症儿童", "autism"), ("法律援助", "legal aid"), ("环境保护", "environment"),
                  ("性别平等", "gender equality"), ("心理健康", "mental health"), ("少数民族", "minorities"))

# Share of a category's records of each kind (the rest are ordinary records).
KIND_RATES = {
    "exact_duplicate": 0.020,      # byte-identical copy of an earlier line of the category
    "padded_duplicate": 0.010,     # same text with white space around it (equal once normalised)
    "cross_duplicate": 0.010,      # same text as a record of an earlier category
    "near_duplicate": 0.030,       # an earlier record with a few characters edited
    "bad": 0.010,                  # a record the category stage must reject
}
# Near-duplicate clusters (`clusters` > 0): sizes are uniform in [CLUSTER_MIN, CLUSTER_MAX]; at most
# OPEN_CLUSTERS are being filled at a time, so a cluster's members are spread over a stretch of the file.
CLUSTER_MIN, CLUSTER_MAX = 2, 50
OPEN_CLUSTERS = 64
# OCR-like confusions (either way), and the templates a cluster's reworded members are cast in.
_OCR_PAIRS = ("己已", "未末", "人入", "日曰", "土士", "大太", "天夫", "王玉", "免兔", "折拆", "析拆", "戊戌",
              "0O", "1l", "，,", "。.", "：:", "？?", "（(", "）)")
_OCR = {a: b for pair in _OCR_PAIRS for a, b in (pair, pair[::-1])}
_TEMPLATES = (("请回答：{}", "答：{}"), ("问题：{}", "{}\n以上仅供参考。"), ("【题目】{}", "解析：{}"),
              ("{}（请详细说明）", "{}希望对你有帮助。"), ("下面这个问题怎么回答？{}", "参考答案：{}"))

# Bad records each layout can carry; each kind is the reason code the category stage gives it.
BAD_KINDS = {
    "cqia": ("empty_output", "too_short", "output_equals_instruction", "missing_field", "invalid_json",
             "schema_invalid"),
    "poison": ("empty_output", "too_short", "output_equals_instruction", "missing_field", "invalid_json",
               "schema_invalid"),
    "part1": ("empty_output", "too_short", "output_equals_instruction", "missing_field", "schema_invalid"),
    "part2": ("empty_output", "too_short", "missing_field"),
}


@dataclass
class CategorySpec:
    """One generated source category: its name, format, size and params entry."""

    name: str
    format: str
    records: int
    seed: int
    files: dict[str, int] = field(default_factory=dict)     # raw file name -> bytes
    kinds: dict[str, int] = field(default_factory=dict)     # kind -> records
    clusters: dict[str, int] = field(default_factory=dict)  # near-duplicate clusters started, largest size

    @property
    def raw_files(self) -> list[str]:
        if self.format == "coig-human-value":
            return ["human_value_alignment_instructions_part1.json", "human_value_alignment_instructions_part2.json"]
        return ["train.jsonl"]

    def params_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"format": self.format, "raw": self.raw_files, "suite": "default",
                                 "source": f"synthetic ({self.format}, seed {self.seed})",
                                 "construction": "Generated by bench/generate.py for the benchmark."}
        if self.format == "poison-mpts":
            entry["defaults"] = {"task_type": {"major": ["问答"], "minor": ["人类价值观"]}, "domain": ["人类价值观"],
                                 "answer_from": "expert", "human_verified": True, "copyright": "synthetic"}
            entry["rules"] = {"min_chars": {"instruction": 2, "output": 10},
                              "max_chars": {"instruction": 2000, "output": 8000}}
            entry["normalize"] = {"fullwidth_ascii": True}
        elif self.format == "coig-human-value":
            # require_accept is off: the benchmark has no review decisions, and
            # a category that releases nothing would not measure merge.
            entry["defaults"] = {"task_type": {"major": ["试题"], "minor": ["选择题"]}, "domain": ["人类价值观"],
                                 "answer_from": "llm", "human_verified": False, "copyright": "synthetic"}
            entry["rules"] = {"min_chars": {"instruction": 5, "output": 1},
                              "max_chars": {"instruction": 4000, "output": 4000}}
        else:
            entry["defaults"] = {"copyright": "synthetic"}
            entry["rules"] = {"min_chars": {"instruction": 4, "output": 20},
                              "max_chars": {"instruction": 2000, "output": 8000}}
            entry["normalize"] = {"fullwidth_ascii": True}
        return entry

    def summary(self) -> dict[str, Any]:
        out = {"name": self.name, "format": self.format, "records": self.records, "seed": self.seed,
               "bytes": sum(self.files.values()), "files": self.files, "kinds": self.kinds}
        return {**out, "clusters": self.clusters} if self.clusters else out


def plan(records: int, categories: int = 12, seed: int = 0) -> list[CategorySpec]:
    """Split `records` over `categories` source categories (with 12, the largest is 3.75x the smallest).

    Formats repeat in the pattern cqia, poison, cqia, human-value, cqia, cqia,
    so 12 categories are 8 cqia-jsonl, 2 poison-mpts and 2 coig-human-value.
    """
    if records < 10 * categories:
        raise ValueError(f"--records must be at least 10 per category ({10 * categories} for {categories})")
    if not 1 <= categories <= 99:
        raise ValueError("--categories must be between 1 and 99")
    pattern = ("cqia-jsonl", "poison-mpts", "cqia-jsonl", "coig-human-value", "cqia-jsonl", "cqia-jsonl")
    weights = [1.0 / (1.0 + 0.25 * i) for i in range(categories)]
    total = sum(weights)
    sizes = [int(records * w / total) for w in weights]
    sizes[0] += records - sum(sizes)
    specs = []
    for i, size in enumerate(sizes):
        fmt = pattern[i % len(pattern)]
        short = {"cqia-jsonl": "cqia", "poison-mpts": "poison", "coig-human-value": "human_value"}[fmt]
        specs.append(CategorySpec(name=f"{short}_{i + 1:02d}", format=fmt, records=size, seed=seed * 1000 + i))
    return specs


class Vocabulary:
    """Made-up words with Zipf frequencies; draws text of a given length fast, in batches."""

    def __init__(self, seed: int, size: int = 30_000):
        rng = np.random.default_rng(seed)
        chars = np.array(list(_COMMON))
        char_p = 1.0 / np.arange(1, len(chars) + 1) ** 0.8
        char_p /= char_p.sum()
        lengths = rng.choice([1, 2, 3, 4], size=size, p=[0.22, 0.58, 0.13, 0.07])
        picks = rng.choice(len(chars), size=int(lengths.sum()), p=char_p)
        words, pos = [], 0
        for n in lengths.tolist():
            words.append("".join(chars[picks[pos:pos + n]].tolist()))
            pos += n
        words[:len(_FUNCTION_WORDS)] = list(_FUNCTION_WORDS)        # the most frequent ranks
        words[len(words) // 2: len(words) // 2 + len(_TRADITIONAL)] = list(_TRADITIONAL)
        tokens = words + list(_PUNCT) + list(_ASCII_TOKENS) + list(_FULLWIDTH_TOKENS) + list(_ODD_TOKENS)
        word_p = 1.0 / np.arange(1, size + 1) ** 0.9
        word_p = word_p / word_p.sum() * (1.0 - sum(_PUNCT_WEIGHTS) - 0.0075)
        p = np.concatenate([word_p, _PUNCT_WEIGHTS, [0.004 / len(_ASCII_TOKENS)] * len(_ASCII_TOKENS),
                            [0.003 / len(_FULLWIDTH_TOKENS)] * len(_FULLWIDTH_TOKENS),
                            [0.0005 / len(_ODD_TOKENS)] * len(_ODD_TOKENS)])
        self.tokens = tokens
        self.cdf = np.cumsum(p / p.sum())
        self.mean_len = float(sum(len(t) * q for t, q in zip(tokens, p / p.sum())))

    def texts(self, rng: np.random.Generator, lengths: np.ndarray) -> list[str]:
        """One text per entry of `lengths` (characters, approximately)."""
        counts = np.maximum(1, np.rint(lengths / self.mean_len).astype(np.int64))
        idx = np.searchsorted(self.cdf, rng.random(int(counts.sum())), side="right")
        np.minimum(idx, len(self.tokens) - 1, out=idx)
        pieces = list(map(self.tokens.__getitem__, idx.tolist()))
        out, pos = [], 0
        for n in counts.tolist():
            out.append("".join(pieces[pos:pos + n]).strip("，。、；？！：\n") + "。")
            pos += n
        return out

    def chars(self, rng: np.random.Generator, n: int) -> list[str]:
        return [_COMMON[i] for i in rng.integers(0, len(_COMMON), n).tolist()]


def lognormal(rng: np.random.Generator, median: float, sigma: float, n: int, low: int, high: int) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(median), sigma, n), low, high)


# Text length model per format: (median, sigma) in characters.
LENGTHS = {
    "cqia-jsonl": {"instruction": (18, 0.7), "output": (480, 0.9)},
    "poison-mpts": {"instruction": (16, 0.5), "output": (220, 0.6)},
    "human_value_part1": {"instruction": (30, 0.6), "output": (260, 0.6)},
    "human_value_part2": {"instruction": (40, 0.5), "output": (60, 0.6)},
}


class _Writer:
    """Turns (instruction, output) pairs into one format's raw records, with duplicates and bad records."""

    def __init__(self, spec: CategorySpec, vocab: Vocabulary, shared: "SharedPool", clusters: float = 0.0):
        self.spec = spec
        self.vocab = vocab
        self.shared = shared
        self.rng = np.random.default_rng(spec.seed)
        self.kinds: Counter[str] = Counter()
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=5000)   # (line, instruction, output)
        self.cluster_share = clusters
        # open clusters: [instruction, output, members still to write]; sizes of the clusters started
        self.open: list[list[Any]] = []
        self.cluster_sizes: list[int] = []

    def pairs(self, n: int, layout: str) -> Iterator[tuple[str, str]]:
        lengths = LENGTHS["cqia-jsonl" if layout == "cqia" else "poison-mpts" if layout == "poison" else
                          f"human_value_{layout}"]
        rng = self.rng
        for start in range(0, n, BATCH):
            m = min(BATCH, n - start)
            ins = self.vocab.texts(rng, lognormal(rng, *lengths["instruction"], m, 2, 1500))
            outs = self.vocab.texts(rng, lognormal(rng, *lengths["output"], m, 8, 12000))
            for i, o in zip(ins, outs):
                i = i.rstrip("。") + ("？" if rng.random() < 0.6 else "。")
                if layout == "part2":
                    options = self.vocab.texts(rng, lognormal(rng, 10, 0.4, 4, 2, 40))
                    i += "\n" + "\n".join(f"{l}. {o.rstrip('。')}" for l, o in zip("ABCD", options))
                yield i, o

    def kind(self) -> str:
        if self.cluster_share and self.rng.random() < self.cluster_share:
            return "cluster"
        roll = self.rng.random()
        for name, rate in KIND_RATES.items():
            if roll < rate:
                return name
            roll -= rate
        return "ordinary"

    def near(self, text: str) -> str:
        chars = list(text)
        edits = max(1, len(chars) // 50)
        positions = self.rng.integers(0, len(chars), edits).tolist()
        for pos, ch in zip(positions, self.vocab.chars(self.rng, edits)):
            chars[pos] = ch
        return "".join(chars)

    def ocr(self, text: str, rate: float) -> str:
        """OCR-like noise: about `rate` of the characters confused with a look-alike, dropped or doubled."""
        chars = list(text)
        edits = int(self.rng.binomial(len(chars), rate)) if chars else 0
        for pos in sorted(self.rng.integers(0, len(chars), edits).tolist(), reverse=True):
            roll = self.rng.random()
            pos = min(pos, len(chars) - 1)          # a deletion at the end shortened the text
            if roll < 0.6:
                chars[pos] = _OCR.get(chars[pos], self.vocab.chars(self.rng, 1)[0])
            elif roll < 0.8 and len(chars) > 1:
                del chars[pos]
            else:
                chars.insert(pos, chars[pos])
        return "".join(chars)

    def variant(self, ins: str, out: str) -> tuple[str, str]:
        """A later member of a near-duplicate cluster: OCR noise (1-3% of characters) or a template."""
        if self.rng.random() < 0.7:
            rate = float(self.rng.uniform(0.01, 0.03))
            return self.ocr(ins, rate), self.ocr(out, rate)
        t_ins, t_out = _TEMPLATES[int(self.rng.integers(len(_TEMPLATES)))]
        return t_ins.format(ins), t_out.format(out)

    def cluster_member(self, ins: str, out: str) -> tuple[str, str]:
        """The next member of an open cluster, or (ins, out) as the first member of a new one."""
        if len(self.open) < OPEN_CLUSTERS:
            size = int(self.rng.integers(CLUSTER_MIN, CLUSTER_MAX + 1))
            self.open.append([ins, out, size - 1])
            self.cluster_sizes.append(size)
            return ins, out
        k = int(self.rng.integers(len(self.open)))
        cluster = self.open[k]
        cluster[2] -= 1
        if not cluster[2]:
            self.open[k] = self.open[-1]
            self.open.pop()
        return self.variant(cluster[0], cluster[1])

    def records(self, n: int, layout: str) -> Iterator[tuple[str, str, str]]:
        """(kind, instruction, output) for n records; 'exact_duplicate' repeats a previous line."""
        for ins, out in self.pairs(n, layout):
            kind = self.kind()
            if kind == "cluster":
                ins, out = self.cluster_member(ins, out)
                self.kinds[kind] += 1
                yield kind, ins, out
                continue
            if kind in ("exact_duplicate", "padded_duplicate", "near_duplicate") and not self.recent:
                kind = "ordinary"
            if kind == "cross_duplicate":
                pair = self.shared.pick(self.rng, layout)
                if pair is None:
                    kind = "ordinary"
                else:
                    ins, out = pair
            if kind == "padded_duplicate":
                _, ins, out = self.recent[int(self.rng.integers(len(self.recent)))]
                ins, out = f"  {ins}", f"{out}\n\n"
            elif kind == "near_duplicate":
                _, ins, out = self.recent[int(self.rng.integers(len(self.recent)))]
                out = self.near(out)
            elif kind == "bad":
                kinds = BAD_KINDS[layout]
                kind = kinds[int(self.rng.integers(len(kinds)))]
                if kind == "empty_output":
                    out = ""
                elif kind == "too_short":
                    ins = ins[:1]
                elif kind == "output_equals_instruction":
                    out = ins
            self.kinds[kind] += 1
            if kind == "ordinary":
                self.shared.offer(self.rng, layout, ins, out)
            yield kind, ins, out

    def remember(self, kind: str, line: str, ins: str, out: str) -> None:
        if kind in ("ordinary", "near_duplicate"):
            self.recent.append((line, ins, out))

    def repeat(self) -> str:
        return self.recent[int(self.rng.integers(len(self.recent)))][0]


class SharedPool:
    """A bounded reservoir of earlier categories' texts, for cross-category duplicates."""

    def __init__(self, size: int = 2000):
        self.size = size
        self.items: dict[str, list[tuple[str, str]]] = {}
        self.seen: Counter[str] = Counter()
        self.frozen: dict[str, list[tuple[str, str]]] = {}

    def offer(self, rng: np.random.Generator, layout: str, ins: str, out: str) -> None:
        group = "exam" if layout == "part2" else "text"
        items = self.items.setdefault(group, [])
        self.seen[group] += 1
        if len(items) < self.size:
            items.append((ins, out))
        else:
            j = int(rng.integers(self.seen[group]))
            if j < self.size:
                items[j] = (ins, out)

    def pick(self, rng: np.random.Generator, layout: str) -> tuple[str, str] | None:
        items = self.frozen.get("exam" if layout == "part2" else "text")
        return items[int(rng.integers(len(items)))] if items else None

    def close_category(self) -> None:
        """Texts offered so far become pickable (only earlier categories' records are copied)."""
        self.frozen = {k: list(v) for k, v in self.items.items()}


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _jsonl_line(writer: _Writer, kind: str, fmt: str, ins: str, out: str) -> str:
    rng = writer.rng
    if fmt == "poison-mpts":
        zh, en = POISON_DOMAINS[int(rng.integers(len(POISON_DOMAINS)))]
        obj: dict[str, Any] = {"prompt": ins, "answer": out, "domain_en": en, "domain_zh": zh}
        if kind == "missing_field":
            del obj["answer"]
        elif kind == "schema_invalid":
            obj["answer"] = len(out)
    else:
        obj = {"instruction": ins, "input": "", "output": out,
               "task_type": {"major": [TASK_MAJOR[int(rng.integers(len(TASK_MAJOR)))]],
                             "minor": [TASK_MINOR[int(rng.integers(len(TASK_MINOR)))]]},
               "domain": [DOMAINS[int(rng.integers(len(DOMAINS)))]],
               "metadata": _dumps({"upvotes": int(rng.integers(0, 20000))}) if rng.random() < 0.7 else "",
               "answer_from": "human" if rng.random() < 0.8 else "llm",
               "human_verified": bool(rng.random() < 0.5), "copyright": "synthetic"}
        if kind == "missing_field":
            del obj["output"]
        elif kind == "schema_invalid":
            obj["answer_from"] = ""
    line = _dumps(obj)
    if kind == "invalid_json":
        line = line[: len(line) // 2]
    return line


def _exam(kind: str, question: str, analysis: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"textbox_q_instruction": "请选择最恰当的一项。", "textbox_q_context": "",
                           "textbox_question": question, "textbox_answer": "ABCD"[len(question) % 4],
                           "textbox_answer_analysis": analysis}
    if kind == "empty_output":
        obj["textbox_answer"] = obj["textbox_answer_analysis"] = ""
    elif kind == "too_short":
        obj["textbox_q_instruction"] = ""
    elif kind == "missing_field":
        del obj["textbox_answer"]
    return obj


def _write_jsonl(path: Path, writer: _Writer, fmt: str, n: int, layout: str) -> int:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for kind, ins, out in writer.records(n, layout):
            if kind == "exact_duplicate":
                line = writer.repeat()
            elif layout == "part2":
                line = _dumps(_exam(kind, ins, out))
            else:
                line = _jsonl_line(writer, kind, fmt, ins, out)
            writer.remember(kind, line, ins, out)
            handle.write(line)
            handle.write("\n")
    return path.stat().st_size


def _write_array(path: Path, writer: _Writer, n: int) -> int:
    """Part 1 of COIG human-value: a BOM, then a JSON array indented by 4 spaces."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(BOM + "[")
        first = True
        for kind, ins, out in writer.records(n, "part1"):
            if kind == "exact_duplicate":
                element = writer.repeat()
            else:
                keys: list[tuple[str, Any]] = [("instruction", ins), ("input", ""), ("output", out)]
                if kind == "missing_field":
                    keys.pop()
                elif kind == "schema_invalid":
                    keys[1] = ("input", len(out))
                body = ",\n".join(f"        {_dumps(k)}: {_dumps(v)}" for k, v in keys)
                element = "    {\n" + body + "\n    }"
            writer.remember(kind, element, ins, out)
            handle.write("\n" if first else ",\n")
            handle.write(element)
            first = False
        handle.write("\n]\n")
    return path.stat().st_size


def write_category(spec: CategorySpec, raw_dir: Path, vocab: Vocabulary, shared: SharedPool,
                   clusters: float = 0.0) -> CategorySpec:
    """Write one category's raw files into raw_dir (created); fills spec.files and spec.kinds."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(spec, vocab, shared, clusters)
    if spec.format == "coig-human-value":
        part2 = spec.records // 3
        part1_file, part2_file = spec.raw_files
        spec.files[part1_file] = _write_array(raw_dir / part1_file, writer, spec.records - part2)
        writer.recent.clear()
        writer.open.clear()          # the exam layout's records are not variants of part 1's
        spec.files[part2_file] = _write_jsonl(raw_dir / part2_file, writer, spec.format, part2, "part2")
    else:
        layout = "poison" if spec.format == "poison-mpts" else "cqia"
        spec.files["train.jsonl"] = _write_jsonl(raw_dir / "train.jsonl", writer, spec.format, spec.records, layout)
    spec.kinds = dict(sorted(writer.kinds.items()))
    if writer.cluster_sizes:
        spec.clusters = {"started": len(writer.cluster_sizes), "max_size": max(writer.cluster_sizes)}
    shared.close_category()
    return spec


def generate(out: Path, records: int, categories: int = 12, seed: int = 0, clusters: float = 0.0) -> list[CategorySpec]:
    """Write `records` raw records split over `categories` categories into out/<category>/.

    `clusters` is the share of records that are members of near-duplicate clusters (0: none).
    """
    if not 0.0 <= clusters < 0.9:
        raise ValueError("--clusters must be a share of records in [0, 0.9), e.g. 0.3")
    specs = plan(records, categories, seed)
    vocab = Vocabulary(seed)
    shared = SharedPool()
    for spec in specs:
        write_category(spec, Path(out) / spec.name, vocab, shared, clusters)
    return specs


def append_records(spec: CategorySpec, raw_dir: Path, records: int, seed: int) -> int:
    """Append `records` new ordinary records to a JSON Lines category (an upstream update)."""
    if spec.format == "coig-human-value":
        raise ValueError("append_records: use a JSON Lines category (cqia-jsonl or poison-mpts)")
    extra = CategorySpec(spec.name, spec.format, records, seed)
    writer = _Writer(extra, Vocabulary(seed), SharedPool())
    layout = "poison" if spec.format == "poison-mpts" else "cqia"
    path = raw_dir / "train.jsonl"
    before = path.stat().st_size
    with open(path, "a", encoding="utf-8", newline="") as handle:
        for ins, out in writer.pairs(records, layout):
            handle.write(_jsonl_line(writer, "ordinary", spec.format, ins, out) + "\n")
    return path.stat().st_size - before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000, help="raw records in all (default 10000)")
    ap.add_argument("--categories", type=int, default=12, help="source categories (default 12)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clusters", type=float, default=0.0, metavar="SHARE",
                    help="share of records in near-duplicate clusters of 2-50 members (default 0; 0.3: "
                         "the duplication-heavy corpus)")
    ap.add_argument("--out", type=Path, required=True, help="directory for <category>/<raw files>")
    args = ap.parse_args(argv)
    try:
        specs = generate(args.out, args.records, args.categories, args.seed, args.clusters)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json.dump([s.summary() for s in specs], sys.stdout, ensure_ascii=False, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
