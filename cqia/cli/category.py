"""`cqia category add`: register a source category whose format the registry already reads."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Any

import click
import orjson

from cqia.common.errors import CqiaError
from cqia.common.layout import PARAMS, RAW_DIR, REVIEWS_DIR, registry_root

COPIED_KEYS = ("defaults", "rules", "normalize", "review")


def add_entry_text(text: str, name: str, entry: dict[str, Any], where: str = str(PARAMS)) -> str:
    """params.yaml's text with `entry` appended under `categories:`, nothing else touched.

    The entry goes at the end of the `categories:` block (release order: a new category
    comes last); the result is re-read to prove that only the new category was added.
    """
    from ruamel.yaml import YAML

    safe = YAML(typ="safe", pure=True)
    before = safe.load(text)
    if not isinstance(before, dict) or not isinstance(before.get("categories"), dict):
        raise CqiaError("no 'categories' mapping", where=where, fix="Add `categories:` with at least one category")
    if name in before["categories"]:
        raise CqiaError(f"category {name!r} already exists", where=f"{where}: categories.{name}",
                        fix="Choose another name, or edit its entry")
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if re.match(r"categories:\s*(#.*)?$", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    dumper = YAML(typ="rt")
    dumper.default_flow_style = None
    dumper.width = 4096
    buffer = io.StringIO()
    dumper.dump({name: entry}, buffer)
    snippet = "".join("  " + line if line.strip() else line for line in buffer.getvalue().splitlines(keepends=True))
    if lines[end - 1:end] and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    new_text = "".join(lines[:end]) + "\n" + snippet + "".join(lines[end:])
    after = safe.load(new_text)
    expected = dict(before)
    expected["categories"] = {**before["categories"], name: orjson.loads(orjson.dumps(entry))}
    if after != expected:
        raise CqiaError("the new entry cannot be added without changing other keys", where=where,
                        fix="Add it by hand under `categories:`")
    return new_text


def add_category(name: str, fmt: str, raw: tuple[Path, ...], like: str | None, suite: str,
                 source: str, construction: str, root: Path = Path(".")) -> dict[str, Any]:
    """Add category `name` to the registry at `root`; `raw` paths are relative to the working directory."""
    from cqia.common.params import check_name, load_yaml
    from cqia.ingest.config import checked_category

    params_path = root / PARAMS
    check_name(name, str(params_path))
    if not raw:
        raise CqiaError("no raw file given", fix="Name the upstream file(s): --raw path/to/train.jsonl")
    params = load_yaml(params_path)
    categories = params.get("categories") or {}
    if name in categories:
        raise CqiaError(f"category {name!r} already exists", where=f"{params_path}: categories.{name}",
                        fix="Choose another name, or edit its entry")
    entry: dict[str, Any] = {"format": fmt, "raw": [p.name for p in raw], "suite": suite,
                             "source": source, "construction": construction}
    if like is not None:
        if like not in categories:
            raise CqiaError(f"unknown category {like!r} for --like", where=str(params_path),
                            fix=f"Available categories: {list(categories)}")
        entry.update({k: v for k, v in categories[like].items() if k in COPIED_KEYS})
    checked_category(name, entry, str(params_path))  # same checks as the stage
    suite_path = root / "expectations" / f"{suite}.json"
    if not suite_path.is_file():
        raise CqiaError(f"suite {suite!r} not found", where=suite_path.as_posix(),
                        fix="Use --suite default, or write the suite first")
    for path in raw:
        if not path.is_file():
            raise CqiaError("raw file not found", where=str(path), fix="Name an existing file")
    if len({p.name for p in raw}) != len(raw):
        raise CqiaError("two raw files have the same name", fix="Rename one; they share data/raw/<name>/")
    target = root / RAW_DIR / name
    if target.exists():
        raise CqiaError("already exists", where=str(target),
                        fix="Remove it, or choose another category name")
    new_text = add_entry_text(params_path.read_text(encoding="utf-8"), name, entry, str(params_path))

    target.mkdir(parents=True)
    for path in raw:
        shutil.copyfile(path, target / path.name)
    reviews_dir = root / REVIEWS_DIR
    review = reviews_dir / f"{name}.jsonl"
    reviews_dir.mkdir(parents=True, exist_ok=True)
    created_review = not review.exists()
    if created_review:
        from cqia.common.fileio import EMPTY_JSONL

        review.write_bytes(EMPTY_JSONL)
    params_path.write_text(new_text, encoding="utf-8")
    return {"category": name, "entry": entry, "raw": [str(target / p.name) for p in raw],
            "reviews": str(review), "created_reviews": created_review}


def register(cli: click.Group) -> None:
    @cli.group()
    def category() -> None:
        """Source categories: add one in a format the registry already reads.

        \b
        Example:
            cqia category add xhs --format cqia-jsonl --raw ~/upstream/xhs/train.jsonl --like zhihu
        """

    @category.command("add")
    @click.argument("name")
    @click.option("--format", "fmt", required=True, help="The raw format: poison-mpts, coig-human-value or cqia-jsonl.")
    @click.option("--raw", "raw", multiple=True, type=click.Path(path_type=Path),
                  help="An upstream raw file, copied to data/raw/NAME/ (repeat for several, in order).")
    @click.option("--like", default=None, help="Copy defaults, rules, normalize and review settings from this category.")
    @click.option("--suite", default="default", show_default=True, help="Expectation suite in expectations/.")
    @click.option("--source", default="", help="Where the data comes from (dataset card).")
    @click.option("--construction", default="", help="How the records were built (dataset card).")
    @click.option("--json", "as_json", is_flag=True, help="Print what was added as JSON.")
    def add(name: str, fmt: str, raw: tuple[Path, ...], like: str | None, suite: str, source: str,
            construction: str, as_json: bool) -> None:
        """Add category NAME: its params.yaml entry, its raw files and an empty review file.

        Nothing else is needed: `dvc repro` then runs category@NAME, dedup, publish@NAME, merge
        and report. For large upstream files, track data/raw/NAME with `dvc add` afterwards.

        \b
        Example:
            cqia category add xhs --format cqia-jsonl --raw ~/upstream/xhs/train.jsonl --like zhihu --source Xiaohongshu
        """
        root = registry_root()
        result = add_category(name, fmt, raw, like, suite, source, construction, root)
        if as_json:
            click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        click.echo(f"Added category {name} ({fmt}) to {root / PARAMS}:")
        for path in result["raw"]:
            click.echo(f"  raw file   {path}")
        click.echo(f"  reviews    {result['reviews']}" + (" (new, no decisions yet)" if result["created_reviews"] else ""))
        click.echo(f"Next: dvc repro   (runs category@{name}, dedup, publish@{name}, merge and report)")
