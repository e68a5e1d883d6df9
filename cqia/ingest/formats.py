"""Format adapters: raw upstream bytes -> raw items -> record fields.

An adapter never sees a path. It takes the bytes of one raw file (an
iterable of b"\\n"-terminated lines, or the whole content for JSON arrays)
and yields `RawItem`s: the parsed raw object with its 1-based line (and
array index), or the reason code it could not be parsed with.

`fields(format, layout, raw)` then maps a parsed raw object to the record's
text fields plus any per-record labels the format carries (100PoisonMpts'
domain labels, for instance).

Problems of a whole file (not UTF-8, truncated, the wrong layout) are
`FileProblem`s with the 1-based line; the stage turns them into one-line
errors naming the file. Problems of one record are `RawItem`s with a reason
code, so the rest of the file is still released.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import orjson

from cqia.common.errors import CqiaError
from cqia.common.record import RECORD_KEYS

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


class FileProblem(ValueError):
    """A problem of the whole raw file: the stage stops with this message and the fix.

    `fix` may contain "{file}", which the stage replaces with the file's path.
    """

    def __init__(self, line: int, message: str, fix: str):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message
        self.fix = fix


@contextmanager
def file_problems(path: Any):
    """A FileProblem raised by a parser becomes a one-line error naming the file and the line."""
    try:
        yield
    except FileProblem as exc:
        raise CqiaError(exc.message, where=f"{path}:{exc.line}", fix=exc.fix.replace("{file}", str(path))) from None


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


def parse_jsonl(lines: Iterable[bytes], layout: str = "jsonl", start: int = 1) -> Iterator[RawItem]:
    """JSON Lines, split on b"\\n" only (U+2028 inside strings stays inside).

    A BOM is dropped at the start of any line (files concatenated with `cat`
    carry one per part); blank lines are not records. A last line that has no
    final newline and stops in the middle of a JSON value means the file was
    cut off: that raises FileProblem rather than releasing the rest quietly.
    `start` is the line number of the first line (a chunk of a file starts
    further down).
    """
    for number, line in enumerate(lines, start=start):
        if line.startswith(BOM):
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
            if not line.endswith(b"\n") and exc.msg.startswith("unexpected end of data"):
                raise FileProblem(number, "the last line stops in the middle of a JSON value and has no final "
                                  "newline: the file looks truncated",
                                  "Download the file again (compare its md5 with upstream's), or delete the "
                                  "incomplete last line") from None
            yield RawItem(number, None, None, text, layout, "invalid_json", f"{exc.msg} at column {exc.colno}")
            continue
        if not isinstance(value, dict):
            yield RawItem(number, None, value, text, layout, "not_an_object",
                          f"a JSON {_json_type(value)} where an object is expected")
            continue
        yield RawItem(number, None, value, text, layout)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {"str": "string", "list": "array", "dict": "object"}.get(type(value).__name__, type(value).__name__)


_WS = " \t\r\n"


def parse_json_array(data: bytes, layout: str = "array") -> Iterator[RawItem]:
    """One JSON array of objects; each element keeps its index and start line.

    Elements are decoded one by one so that a bad element is located
    precisely; the file-level errors (not an array, broken syntax) are raised
    as FileProblem with a 1-based line for the caller to report. Each element
    is then parsed again with orjson, so an array element obeys exactly the
    rules of a JSON Lines record: what `json` alone would let through (NaN,
    Infinity, a lone surrogate such as "\\ud800") is an `invalid_json` reject,
    not a crash when the record is written.
    """
    for line, index, raw_text in scan_json_array(data):
        yield array_item(line, index, raw_text, layout)


def scan_json_array(data: bytes) -> Iterator[tuple[int, int, str]]:
    """The elements of one JSON array as (start line, 1-based index, verbatim text), for `array_item`.

    Raises the file-level FileProblems of `parse_json_array`; a chunk of
    elements can then become items anywhere (cqia/ingest/parallel.py's workers).
    """
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(line, f"not valid UTF-8 (byte {exc.start + 1}: {exc.reason})",
                          "Convert the file to UTF-8 (e.g. `iconv -f GB18030 -t UTF-8`)") from None
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "[":
        line = text.count("\n", 0, pos) + 1
        raise FileProblem(line, f"expected a JSON array ('[') but found {text[pos:pos + 1]!r}",
                          "Fix the JSON; nothing was written")
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
            if not text.rstrip().endswith("]"):
                raise FileProblem(exc.lineno, f"element {index} is cut off and the array has no closing ']': "
                                  "the file looks truncated",
                                  "Download the file again (compare its md5 with upstream's)") from None
            raise FileProblem(exc.lineno, f"element {index} is not valid JSON at column {exc.colno} ({exc.msg})",
                              "Fix the JSON; nothing was written") from None
        except RecursionError:
            raise FileProblem(line, f"element {index} is nested too deeply to be a record",
                              "Fix the JSON; nothing was written") from None
        yield line, index, text[pos:end]
        pos = _skip(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            rest = _skip(text, pos + 1)
            if rest < len(text):
                raise FileProblem(text.count("\n", 0, rest) + 1, "unexpected data after the array",
                                  "Fix the JSON; nothing was written")
            return
        if pos >= len(text):
            raise FileProblem(text.count("\n", 0, pos) + 1,
                              f"the array ends after element {index} without its closing ']': the file looks truncated",
                              "Download the file again (compare its md5 with upstream's)")
        raise FileProblem(text.count("\n", 0, pos) + 1,
                          f"expected ',' or ']' after element {index}, found {text[pos:pos + 1]!r}",
                          "Fix the JSON; nothing was written")


def array_item(line: int, index: int, raw_text: str, layout: str = "array") -> RawItem:
    """One element `scan_json_array` found, parsed again with orjson (the JSON Lines rules)."""
    try:
        value = orjson.loads(raw_text)
    except orjson.JSONDecodeError as exc:
        return RawItem(line, index, None, raw_text, layout, "invalid_json",
                       f"element {index}: {exc.msg} at column {exc.colno} of the element")
    if isinstance(value, dict):
        return RawItem(line, index, value, raw_text, layout)
    return RawItem(line, index, value, raw_text, layout, "not_an_object",
                   f"element {index} is a JSON {_json_type(value)} where an object is expected")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


SNIFF_BYTES = 1 << 16


def check_encoding(head: bytes) -> None:
    """Raise FileProblem if the first bytes of a raw file are not UTF-8 at all.

    One line that is not UTF-8 among UTF-8 lines is that line's problem (an
    `invalid_utf8` reject, the rest is released). A file in which no line of
    the first 64 KB that has non-ASCII bytes is UTF-8 was saved in another
    encoding: converting it once is the fix, not one reject per line.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (head and head.count(b"\x00") * 10 >= len(head)):
        raise FileProblem(1, "the file is UTF-16, not UTF-8",
                          "Convert it once: `iconv -f UTF-16 -t UTF-8 {file} > {file}.utf8`, then replace the file")
    lines = head.split(b"\n")
    cut = len(head) >= SNIFF_BYTES                  # the last line may stop in the middle of a character
    first_bad = None
    bad = []
    for number, line in enumerate(lines, start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            return                                  # a UTF-8 file; bad lines become invalid_utf8 rejects
        except UnicodeDecodeError as exc:
            if cut and number == len(lines) and exc.reason == "unexpected end of data":
                return
            first_bad = first_bad or number
            bad.append(line)
    if first_bad is None:
        return
    try:
        b"\n".join(bad).decode("gb18030")
    except UnicodeDecodeError:
        return                                      # not a known legacy encoding either: reject line by line
    raise FileProblem(first_bad, "the file is not UTF-8: none of its lines with non-ASCII bytes decodes as "
                      "UTF-8, and they decode as GBK/GB18030",
                      "Convert it once: `iconv -f GB18030 -t UTF-8 {file} > {file}.utf8`, then replace the file "
                      "(GB18030 is a superset of GBK)")


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


CQIA_KEYS = RECORD_KEYS[1:]   # a cqia-jsonl line carries every field of the record but the id


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
    layouts: dict[str, tuple[str, ...]]               # layout -> the raw keys that identify it

    @property
    def jsonl_layout(self) -> str:
        """The layout of the format's records in a JSON Lines file."""
        return "exam-jsonl" if self.container == "sniff" else "jsonl"


FORMATS: dict[str, Format] = {
    "poison-mpts": Format("poison-mpts", "jsonl", _poison,
                          "100PoisonMpts train.jsonl: {prompt, answer, domain_en, domain_zh} per line",
                          {"jsonl": ("prompt", "answer")}),
    "coig-human-value": Format("coig-human-value", "sniff", _human_value,
                               "BAAI/COIG human-value: part 1 a JSON array of {instruction, input, output} "
                               "(may start with a BOM); part 2 JSON Lines in the exam layout",
                               {"array": ("instruction", "output"),
                                "exam-jsonl": ("textbox_question", "textbox_answer")}),
    "cqia-jsonl": Format("cqia-jsonl", "jsonl", _cqia,
                         "COIG-CQIA release format: 9 keys per line, including metadata",
                         {"jsonl": ("instruction", "output")}),
}
FORMAT_NAMES = tuple(FORMATS)
TEXT_FIELDS = ("instruction", "input", "output")


def edit_base(format_name: str, layout: str, raw: Any) -> dict[str, str]:
    """The text fields as format `format_name` maps them from `raw` (a lineage's raw record): what
    the stored edits of a lineage start from (cqia/common/lineage.py). Empty if raw does not map."""
    fmt = FORMATS.get(format_name)
    if fmt is None or not isinstance(raw, dict):
        return {}
    try:
        fields = fmt.fields(raw, layout)
    except (MissingField, KeyError, TypeError, AttributeError):
        return {}
    return {key: fields[key] for key in TEXT_FIELDS if isinstance(fields.get(key), str)}

_CONTAINER = {"jsonl": "JSON Lines", "exam-jsonl": "JSON Lines", "array": "one JSON array"}


def check_layout(fmt: Format, items: Iterable[RawItem]) -> Iterator[RawItem]:
    """Pass `items` through; raise FileProblem if the first object is plainly in another layout.

    A first record with none of the keys its layout is read from means the
    whole file is in the wrong format (or the wrong container): one error that
    names the format the keys do match, instead of a `missing_field` reject
    for every record. A first record with some of the keys is left to the
    per-record checks.
    """
    checked = False
    for item in items:
        if not checked and isinstance(item.raw, dict):
            checked = True
            check_first(fmt, item)
        yield item


def check_first(fmt: Format, item: RawItem) -> None:
    """Raise FileProblem if `item`, the first object of a file, is plainly in another layout (see check_layout)."""
    keys = fmt.layouts.get(item.layout)
    if keys is None or any(k in item.raw for k in keys):
        return
    found = sorted(item.raw)[:12]
    matches = [(f, layout) for f in FORMATS.values() for layout, need in f.layouts.items()
               if all(k in item.raw for k in need)]
    container = _CONTAINER.get(item.layout, item.layout)
    message = (f"the first record has the keys {found}, but format '{fmt.name}' reads {container} records "
               f"with {list(keys)}")
    same = [layout for f, layout in matches if f.name == fmt.name]
    if same:
        fix = ("Make the file one JSON array (e.g. `jq -s . {file} > {file}.json`), then replace the file"
                      if _CONTAINER.get(same[0]) == "one JSON array" else
                      "Make the file JSON Lines, one object per line (e.g. `jq -c '.[]' {file} > {file}.jsonl`)")
        raise FileProblem(item.line, f"{message}; it reads records with {list(fmt.layouts[same[0]])} only from "
                          f"{_CONTAINER.get(same[0], same[0])}", fix)
    others = sorted({f.name for f, _ in matches})
    if others:
        raise FileProblem(item.line, message, f"These keys are format {others[0]!r}'s: set the category's "
                          "`format` in params.yaml, or fix the file")
    raise FileProblem(item.line, message, f"Check the category's `format` in params.yaml (available: "
                      f"{list(FORMATS)})")
