"""Format adapters: raw upstream bytes -> raw items -> record fields.

An adapter never sees a path. It takes the bytes of one raw file (an
iterable of b"\\n"-terminated lines, or the whole content for JSON arrays)
and yields `RawItem`s: the parsed raw object with its 1-based line (and
array index), or the reason code it could not be parsed with.

`fields(format, layout, raw)` then maps a parsed raw object to the record's
text fields plus any per-record labels the format carries (100PoisonMpts'
domain labels, for instance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import orjson

BOM = b"\xef\xbb\xbf"


@dataclass
class RawItem:
    line: int                      # 1-based line where the raw record starts
    index: int | None              # 1-based position in a JSON array, None for JSON Lines
    raw: Any                       # the parsed raw value (None if it did not parse)
    text: str                      # the raw record verbatim (for rejects that did not parse)
    layout: str                    # which layout of the format the record came in
    reason: str | None = None      # reason code if the item cannot become a record
    detail: str | None = None


class MissingField(Exception):
    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


# --- parsing -------------------------------------------------------------


def _decode(line: bytes) -> tuple[str | None, str | None]:
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"byte {exc.start + 1}: {exc.reason}"


def parse_jsonl(lines: Iterable[bytes], layout: str = "jsonl") -> Iterator[RawItem]:
    """JSON Lines, split on b"\\n" only (U+2028 inside strings stays inside)."""
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        stripped = line.strip()
        if not stripped:
            continue
        text, bad = _decode(stripped)
        if text is None:
            yield RawItem(number, None, None, stripped.decode("utf-8", "backslashreplace"), layout,
                          "invalid_utf8", bad)
            continue
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            yield RawItem(number, None, None, text, layout, "invalid_json", str(exc))
            continue
        if not isinstance(value, dict):
            yield RawItem(number, None, value, text, layout, "not_an_object",
                          f"a JSON {type(value).__name__.replace('dict', 'object')} where an object is expected")
            continue
        yield RawItem(number, None, value, text, layout)


_WS = " \t\r\n"


def parse_json_array(data: bytes, layout: str = "array") -> Iterator[RawItem]:
    """One JSON array of objects; each element keeps its index and start line.

    Elements are decoded one by one so that a bad element is located
    precisely; the file-level errors (not an array, broken syntax) are raised
    as ValueError with a 1-based line for the caller to report.
    """
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"line {line}: not valid UTF-8 ({exc.reason})") from None
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "[":
        line = text.count("\n", 0, pos) + 1
        raise ValueError(f"line {line}: expected a JSON array ('[') but found "
                         f"{text[pos:pos + 1]!r}")
    pos = _skip(text, pos + 1)
    index = 0
    line = text.count("\n", 0, pos) + 1
    last = pos
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line += text.count("\n", last, pos)
        last = pos
        index += 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno} column {exc.colno}: element {index} is not valid JSON ({exc.msg})") from None
        raw_text = text[pos:end]
        if isinstance(value, dict):
            yield RawItem(line, index, value, raw_text, layout)
        else:
            yield RawItem(line, index, value, raw_text, layout, "not_an_object",
                          f"element {index} is a JSON {type(value).__name__} where an object is expected")
        pos = _skip(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            rest = _skip(text, pos + 1)
            if rest < len(text):
                raise ValueError(f"line {text.count(chr(10), 0, rest) + 1}: unexpected data after the array")
            return
        found = text[pos:pos + 1] or "end of file"
        raise ValueError(f"line {text.count(chr(10), 0, pos) + 1}: expected ',' or ']' after element {index}, "
                         f"found {found!r} (is the file truncated?)")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def sniff(head: bytes) -> str:
    """'array' if the file is a JSON array, else 'jsonl'."""
    head = head[len(BOM):] if head.startswith(BOM) else head
    head = head.lstrip()
    return "array" if head.startswith(b"[") else "jsonl"


# --- mapping raw objects to record fields ---------------------------------


def _text(raw: dict, key: str) -> Any:
    if key not in raw or raw[key] is None:
        raise MissingField(key)
    return raw[key]


def _poison(raw: dict, layout: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"instruction": _text(raw, "prompt"), "input": "", "output": _text(raw, "answer")}
    labels = [raw[k] for k in ("domain_zh", "domain_en") if isinstance(raw.get(k), str) and raw[k]]
    fields["domain_extra"] = labels
    return fields


def _human_value(raw: dict, layout: str) -> dict[str, Any]:
    if layout == "array":
        return {"instruction": _text(raw, "instruction"), "input": raw.get("input") or "",
                "output": _text(raw, "output")}
    question = _text(raw, "textbox_question")
    answer = _text(raw, "textbox_answer")
    parts = [raw.get("textbox_q_instruction"), raw.get("textbox_q_context"), question]
    instruction = "\n".join(p for p in parts if isinstance(p, str) and p.strip())
    analysis = raw.get("textbox_answer_analysis")
    output = answer if not (isinstance(analysis, str) and analysis.strip()) else f"{answer}\n\n{analysis}"
    return {"instruction": instruction, "input": "", "output": output}


CQIA_KEYS = ("instruction", "input", "output", "task_type", "domain", "metadata",
             "answer_from", "human_verified", "copyright")


def _cqia(raw: dict, layout: str) -> dict[str, Any]:
    fields = {k: raw[k] for k in CQIA_KEYS if k in raw}
    for key in ("instruction", "output"):
        _text(raw, key)
    fields.setdefault("input", "")
    return fields


@dataclass(frozen=True)
class Format:
    name: str
    container: str                                    # 'jsonl', 'array' or 'sniff'
    fields: Callable[[dict, str], dict[str, Any]]
    description: str


FORMATS: dict[str, Format] = {
    "poison-mpts": Format("poison-mpts", "jsonl", _poison,
                          "100PoisonMpts train.jsonl: {prompt, answer, domain_en, domain_zh} per line"),
    "coig-human-value": Format("coig-human-value", "sniff", _human_value,
                               "BAAI/COIG human-value: part 1 a JSON array of {instruction, input, output} "
                               "(may start with a BOM); part 2 JSON Lines in the exam layout"),
    "cqia-jsonl": Format("cqia-jsonl", "jsonl", _cqia,
                         "COIG-CQIA release format: 9 keys per line, including metadata"),
}
FORMAT_NAMES = tuple(FORMATS)
