"""`cqia category add` and `cqia category remove`: a source category in a format the registry reads.

`add` writes the params entry, the raw files and an empty review file; `remove` takes them away
again with every output the category's stages left (their paths read from dvc.lock, never
spelled out again here), so that `dvc repro` and `cqia verify` see a registry without it.
"""

from __future__ import annotations

import io
import posixpath
import re
import shutil
from pathlib import Path
from typing import Any

import click
import orjson

from cqia.common.errors import CqiaError, did_you_mean
from cqia.common.layout import EXPECTATIONS_DIR, PARAMS, RAW_DIR, REVIEWS_DIR, registry_root, reviews_file

COPIED_KEYS = ("defaults", "rules", "normalize", "review")   # --like NAME
DEFAULT_KEYS = ("rules", "normalize")   # without --like, from the first category (defaults and review are the source's own)


def _categories_block(text: str, where: str) -> tuple[Any, list[str], int, int]:
    """params.yaml's parsed text, its lines, and the lines [start, end) of the `categories:` block
    (`start` is the `categories:` line; trailing blank lines are not in the block)."""
    from ruamel.yaml import YAML

    before = YAML(typ="safe", pure=True).load(text)
    if not isinstance(before, dict) or not isinstance(before.get("categories"), dict):
        raise CqiaError("no 'categories' mapping", where=where, fix="Add `categories:` with at least one category")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"categories:\s*(#.*)?$", line)), None)
    if start is None:
        raise CqiaError("`categories:` is not a block of its own lines", where=where,
                        fix="Edit the entry by hand under `categories:`")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return before, lines, start, end


def _reread(new_text: str, expected: Any, where: str, what: str) -> str:
    """`new_text` if it parses to `expected`, else an error: proof that an edit changed nothing else."""
    from ruamel.yaml import YAML

    if YAML(typ="safe", pure=True).load(new_text) != expected:
        raise CqiaError(f"the entry cannot be {what} without changing other keys", where=where,
                        fix="Edit it by hand under `categories:`")
    return new_text


def add_entry_text(text: str, name: str, entry: dict[str, Any], where: str = str(PARAMS)) -> str:
    """params.yaml's text with `entry` appended under `categories:`, nothing else touched.

    The entry goes at the end of the `categories:` block (release order: a new category
    comes last); the result is re-read to prove that only the new category was added.
    """
    from ruamel.yaml import YAML

    before, lines, start, end = _categories_block(text, where)
    if name in before["categories"]:
        raise CqiaError(f"category {name!r} already exists", where=f"{where}: categories.{name}",
                        fix="Choose another name, or edit its entry")
    dumper = YAML(typ="rt")
    dumper.default_flow_style = None
    dumper.width = 4096
    buffer = io.StringIO()
    dumper.dump({name: entry}, buffer)
    snippet = "".join("  " + line if line.strip() else line for line in buffer.getvalue().splitlines(keepends=True))
    if lines[end - 1:end] and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    new_text = "".join(lines[:end]) + "\n" + snippet + "".join(lines[end:])
    expected = {**before, "categories": {**before["categories"], name: orjson.loads(orjson.dumps(entry))}}
    return _reread(new_text, expected, where, "added")


def remove_entry_text(text: str, name: str, where: str = str(PARAMS)) -> str:
    """params.yaml's text without category `name`'s entry, nothing else touched.

    The entry's lines go with the comment lines right above it and one blank line that
    separates it from its neighbours (so removing what `add_entry_text` added gives the text
    back byte for byte); the result is re-read to prove that only that category went.
    """
    before, lines, start, end = _categories_block(text, where)
    if name not in before["categories"]:
        raise CqiaError(f"unknown category {name!r}", where=where,
                        fix=f"Available categories: {list(before['categories'])}")
    body = [i for i in range(start + 1, end) if lines[i].strip() and not lines[i].lstrip().startswith("#")]
    indent = re.match(r"\s*", lines[body[0]]).group() if body else ""
    key_re = re.compile(re.escape(indent) + r"(['\"]?)([^\s'\"#:][^'\"#:]*)\1\s*:(\s|$)")
    keys = [(i, m.group(2)) for i in body if (m := key_re.match(lines[i]))]
    first = next((n for n, (_, key) in enumerate(keys) if key == name), None)
    if first is None:
        raise CqiaError(f"the entry of {name!r} is not a block of its own lines", where=where,
                        fix="Remove it by hand under `categories:`")
    lo = keys[first][0]
    hi = keys[first + 1][0] if first + 1 < len(keys) else end
    while hi > lo + 1 and (not lines[hi - 1].strip() or lines[hi - 1].startswith(indent + "#")):
        hi -= 1  # blank lines and the next entry's own comments stay
    while lo > start + 1 and lines[lo - 1].startswith(indent + "#"):
        lo -= 1  # the entry's own comments go with it
    if lo > start + 1 and not lines[lo - 1].strip():
        lo -= 1  # the blank line before it
    else:
        while hi < len(lines) and hi < end and not lines[hi].strip():
            hi += 1  # the first entry: the blank line after it
    new_text = "".join(lines[:lo] + lines[hi:])
    expected = {**before, "categories": {k: v for k, v in before["categories"].items() if k != name}}
    return _reread(new_text, expected, where, "removed")


def add_category(name: str, fmt: str, raw: tuple[Path, ...], like: str | None, suite: str,
                 source: str, construction: str, root: Path = Path(".")) -> dict[str, Any]:
    """Add category `name` to the registry at `root`; `raw` paths are relative to the working directory."""
    from cqia.common.params import check_name, load_yaml, rule_defaults
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
    elif categories:  # the cleaning rules of the first category: a category with none would clean nothing
        like = next(iter(categories))
        entry.update({k: v for k, v in categories[like].items() if k in DEFAULT_KEYS})
    checked_category(name, entry, str(params_path), rule_defaults(params, str(params_path)))  # as the stage
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
            "reviews": str(review), "created_reviews": created_review, "settings_from": like}


def _lock_stages(lock: Any, name: str) -> tuple[dict[str, Any], list[str]]:
    """dvc.lock's entries of category `name`'s stages (`<stage>@<name>`), and every other stage's outputs."""
    stages = (lock or {}).get("stages") or {} if isinstance(lock, dict) else {}
    mine = {stage: entry or {} for stage, entry in stages.items() if stage.endswith(f"@{name}")}
    others = [str(out.get("path", "")) for stage, entry in stages.items() if stage not in mine
              for out in (entry or {}).get("outs") or []]
    return mine, others


def leftovers(name: str, lock: Any) -> list[Path]:
    """Where category `name` has or left files (they may be gone already), relative to the registry's
    root: its raw files (or their .dvc file), its review file, its stages' outputs in dvc.lock, and
    its parts of other stages' outputs (a dep of its stages inside another stage's output
    directory: dedup's data/dedup/<name>.jsonl)."""
    mine, others = _lock_stages(lock, name)
    paths = [RAW_DIR / name, RAW_DIR / f"{name}.dvc", reviews_file(name)]
    for entry in mine.values():
        paths += [Path(str(out.get("path", ""))) for out in entry.get("outs") or []]
        paths += [Path(str(dep.get("path", ""))) for dep in entry.get("deps") or []
                  if any(Path(str(dep.get("path", ""))).is_relative_to(out) and str(dep.get("path")) != out
                         for out in others)]
    seen: list[Path] = []
    for path in paths:
        if path.parts and not path.is_absolute() and ".." not in path.parts and path not in seen:
            seen.append(path)
    return seen


def _tracked(paths: list[Path], root: Path) -> list[str]:
    """The files git tracks among `paths` (relative to `root`; directories: the files under them),
    relative to `root`; none outside a git repository."""
    from cqia.registry.releases import run

    if not paths:
        return []
    proc = run(["git", "ls-files", "-z", "--", *map(str, paths)], root, check=False)
    return [p for p in proc.stdout.split("\0") if p] if proc.returncode == 0 else []


def _ignore_edits(paths: list[Path], root: Path) -> dict[Path, str]:
    """The .gitignore files next to `paths` (relative to `root`) without the lines `/<name>` DVC
    wrote for them: {file relative to `root`: new text}."""
    edits: dict[Path, str] = {}
    for path in paths:
        ignore = path.parent / ".gitignore"
        if (root / ignore).is_file():
            text = edits.get(ignore, (root / ignore).read_text(encoding="utf-8"))
            edits[ignore] = "".join(line for line in text.splitlines(keepends=True) if line.strip() != f"/{path.name}")
    return {ignore: text for ignore, text in edits.items() if text != (root / ignore).read_text(encoding="utf-8")}


def remove_category(name: str, root: Path = Path(".")) -> dict[str, Any]:
    """Remove category `name` from the registry at `root`: its params entry, raw files, review file
    and every output it left.

    Works as well when the entry is already gone from params.yaml (removed by hand) and only
    what the category left is there. Tracked files are removed with `git rm` (which refuses,
    before anything is deleted, a file with uncommitted changes), the rest deleted; DVC's
    .gitignore lines for the outputs and dvc.lock's entries of its stages go too.
    """
    from cqia.common.params import check_name, load_yaml
    from cqia.registry.releases import LOCK_FILE, run

    params_path, lock_path = root / PARAMS, root / LOCK_FILE
    check_name(name, str(params_path))
    categories = load_yaml(params_path).get("categories") or {}
    in_params = name in categories
    if in_params and len(categories) == 1:
        raise CqiaError(f"category {name!r} is the only one", where=f"{params_path}: categories.{name}",
                        fix="A release needs at least one; add another first (`cqia category add`)")
    lock = load_yaml(lock_path) if lock_path.is_file() else None
    stages = sorted(_lock_stages(lock, name)[0])
    places = leftovers(name, lock)
    paths = [path for path in places if (root / path).exists() or (root / path).is_symlink()]
    if not (in_params or stages or paths):
        raise CqiaError(f"unknown category {name!r}", where=str(params_path),
                        fix=f"{did_you_mean(name, categories)}Available categories: {list(categories)}")
    new_text = remove_entry_text(params_path.read_text(encoding="utf-8"), name, str(params_path)) if in_params else None
    suite = categories[name].get("suite", "default") if in_params else None

    ignores = _ignore_edits(places, root)
    paths += [ignore for ignore, text in ignores.items() if not text.strip()]  # nothing else in it: it goes
    shown = [(root / path).as_posix() + ("/" if (root / path).is_dir() and not (root / path).is_symlink() else "")
             for path in paths]
    tracked = _tracked(paths, root)
    if tracked:
        proc = run(["git", "rm", "-r", "-q", "--", *tracked], root, check=False)
        if proc.returncode:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise CqiaError(f"`git rm` refused: {' '.join(detail[:2])}", where=f"category {name}",
                            fix="Commit or discard the changes to those files first; nothing was removed")
    for path in (root / p for p in paths):  # what `git rm` left: untracked files
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for ignore, text in ignores.items():
        if text.strip():
            (root / ignore).write_text(text, encoding="utf-8")
    for path in paths:
        parent = path.parent
        while parent != Path(".") and (root / parent).is_dir() and not any((root / parent).iterdir()):
            (root / parent).rmdir()
            parent = parent.parent
    if stages:
        from dvc.utils.serialize import modify_yaml

        with modify_yaml(str(lock_path)) as data:
            for stage in stages:
                data["stages"].pop(stage, None)
    if new_text is not None:
        params_path.write_text(new_text, encoding="utf-8")
    others = {entry.get("suite", "default") for key, entry in categories.items() if key != name}
    return {"category": name, "params_entry": in_params, "removed": shown,
            "git_rm": [(root / t).as_posix() for t in tracked], "dvc_lock": stages,
            "gitignore": sorted((root / i).as_posix() for i, text in ignores.items() if text.strip()),
            "unused_suite": (root / EXPECTATIONS_DIR / f"{suite}.json").as_posix()
            if suite and suite not in others else None}


def _grouped(removed: list[str], tracked: list[str]) -> list[str]:
    """`removed` for a person: the files of a directory that went with them as that directory,
    each saying whether git tracked any of it."""
    parents: dict[str, list[str]] = {}
    for path in removed:
        parents.setdefault(posixpath.dirname(path.rstrip("/")), []).append(path)
    rows = []
    for path in removed:
        parent = posixpath.dirname(path.rstrip("/"))
        whole = len(parents[parent]) > 1 and not Path(parent).exists()
        if whole and path != parents[parent][0]:
            continue
        shown = f"{parent}/" if whole else path
        notes = [f"{len(parents[parent])} files"] if whole else []
        if any(t == shown or (shown.endswith("/") and t.startswith(shown)) for t in tracked):
            notes.append("git rm")
        rows.append(shown + (f" ({', '.join(notes)})" if notes else ""))
    return rows


def register(cli: click.Group) -> None:
    @cli.group()
    def category() -> None:
        """Source categories: add one in a format the registry already reads, or remove one.

        \b
        Example:
            cqia category add xhs --format cqia-jsonl --raw ~/upstream/xhs/train.jsonl --like zhihu
        """

    @category.command("add")
    @click.argument("name")
    @click.option("--format", "fmt", required=True, help="The raw format: poison-mpts, coig-human-value or cqia-jsonl.")
    @click.option("--raw", "raw", multiple=True, type=click.Path(path_type=Path),
                  help="An upstream raw file, copied to data/raw/NAME/ (repeat for several, in order).")
    @click.option("--like", default=None,
                  help="Copy defaults, rules, normalize and review settings from this category. "
                       "Without it: the rules and normalize settings of the first category in params.yaml.")
    @click.option("--suite", default="default", show_default=True, help="Expectation suite in expectations/.")
    @click.option("--source", default="", help="Where the data comes from (dataset card).")
    @click.option("--construction", default="", help="How the records were built (dataset card).")
    @click.option("--json", "as_json", is_flag=True, help="Print what was added as JSON.")
    def add(name: str, fmt: str, raw: tuple[Path, ...], like: str | None, suite: str, source: str,
            construction: str, as_json: bool) -> None:
        """Add category NAME: its params.yaml entry, its raw files and an empty review file.

        The entry takes its cleaning rules and normalize settings from --like NAME, or else
        from the first category in params.yaml (it says which); edit them in params.yaml.
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
        copied = [key for key in COPIED_KEYS if key in result["entry"]]
        listed = " and ".join(filter(None, [", ".join(copied[:-1]), "".join(copied[-1:])])) or "none"
        if like is None and result["settings_from"]:
            click.echo(f"  settings   {listed} of {result['settings_from']}, the first category "
                       "(--like NAME copies another's; edit them in params.yaml)")
        elif like is not None:
            click.echo(f"  settings   {listed} of {like}")
        if "rules" not in result["entry"]:
            click.echo(f"  rules      none: only the schema and the suite judge its records "
                       f"(add `rules:` under categories.{name} in params.yaml)")
        click.echo(f"Next: dvc repro   (runs category@{name}, dedup, publish@{name}, merge and report)")

    @category.command("remove")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
    def remove(name: str, as_json: bool) -> None:
        """Remove category NAME and everything it left.

        Removes its params.yaml entry (nothing else in the file changes), its raw files (or
        their .dvc file) and review file (`git rm` where git tracks them), the outputs its
        stages wrote (read from dvc.lock: data/stages/NAME/, data/publish/NAME.json, its parts
        of data/release/ and data/dedup/), DVC's .gitignore lines for them, and its stages'
        entries in dvc.lock. It also cleans up after an entry removed from params.yaml by hand.
        Refuses the last category, and a name that is neither in params.yaml nor left anything.
        Then `dvc repro` rebuilds dedup, merge and report without it; commit the result.

        \b
        Example:
            cqia category remove xhs
        """
        root = registry_root()
        result = remove_category(name, root)
        if as_json:
            click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        click.echo(f"Removed category {name}:")
        if result["params_entry"]:
            click.echo(f"  {(root / PARAMS).as_posix():<12} categories.{name}")
        for row in _grouped(result["removed"], result["git_rm"]):
            click.echo(f"  removed      {row}")
        if result["dvc_lock"]:
            click.echo(f"  dvc.lock     {', '.join(result['dvc_lock'])}")
        if result["gitignore"]:
            click.echo(f"  .gitignore   {', '.join(result['gitignore'])} (the lines of its outputs)")
        if result["unused_suite"]:
            click.echo(f"  kept         {result['unused_suite']} (no other category uses this suite; "
                       "delete it if it is not wanted)")
        click.echo(f"Next: dvc repro   (reruns dedup, merge and report without {name}), "
                   f"then git commit -am 'Remove category {name}'")
