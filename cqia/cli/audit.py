"""`cqia lineage`, `cqia history`, `cqia diff`: record-level audit of releases."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from cqia.common.layout import registry_root
from cqia.registry import audit

SHOW = 10


def _json(obj) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


def _short(value, width: int = 120) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _verdict(rest: dict) -> str:
    """`pass`, or `reject <reason> (<detail>)`: what a step that judges decided (keys consumed)."""
    text = str(rest.pop("result", ""))
    reason, detail = rest.pop("reason", None), rest.pop("detail", None)
    if reason:
        text = f"{text} {reason}".strip()
    if detail:
        text += f" ({detail})"
    return text


def _change(rest: dict, marks: tuple[str, ...] = ()) -> str:
    """`field [rules]: before → after`; one text when they are the same in this copy (PII masked in both)."""
    field, rules = rest.pop("field", "?"), ", ".join(rest.pop("rules", []))
    before, after = rest.pop("before", ""), rest.pop("after", "")
    rest.pop("edits", None)      # stored edits (lineage format 2): before and after are rebuilt from them
    if before != after:
        return f"{field} [{rules}]: {_short(before, 50)} → {_short(after, 50)}"
    found = [at for at in (after.find(mark) for mark in marks) if at >= 0] if isinstance(after, str) else []
    if found:  # start the quote just before the first mask token, so it shows
        start = max(0, min(found) - 15)
        return f"{field} [{rules}]: {'…' if start else ''}{_short(after[start:], 60)}"
    return f"{field} [{rules}]: {_short(after, 60)} (the same text before and after in this copy: its PII is masked)"


def _parse_text(rest: dict) -> str:
    return f"{rest.pop('format', '?')} ({rest.pop('layout', '?')}): {_verdict(rest)}"


def _map_text(rest: dict) -> str:
    if "result" in rest:  # a reject: a field the record needs is missing
        return _verdict(rest)
    defaults, dropped = rest.pop("defaults", None) or [], rest.pop("dropped_keys", None) or []
    text = f"defaults for {', '.join(defaults)}" if defaults else "every field from the raw record"
    return text + (f"; dropped keys {', '.join(dropped)}" if dropped else "")


def _mask_text(rest: dict) -> str:
    from cqia.ingest.pii import MASKS

    return _change(rest, tuple(MASKS[kind] for kind in rest.get("rules", []) if kind in MASKS))


def _review_text(rest: dict) -> str:
    if "decision" not in rest:  # no decision: the category releases only accepted records
        if rest.get("reason") == "review_pending":
            rest.pop("reason"), rest.pop("result", None)
            detail = rest.pop("detail", "")
            return "pending" + (f" ({detail})" if detail else "")
        return _verdict(rest)
    rest.pop("line", None)  # the review file's line: in --json
    text = f"{rest.pop('decision')} by {rest.pop('reviewer', '?')} on {rest.pop('date', '?')}"
    note = rest.pop("note", "")
    return text + (f" ({note})" if note else "")


def _gate_text(rest: dict) -> str:
    return f"{rest.pop('gate', '?')} suite '{rest.pop('suite', '?')}': {_verdict(rest)}"


NEAR_NUMBERS = (("similarity", "similarity"), ("output_similarity", "output similarity"),
                ("threshold", "threshold"), ("ngram", "n-gram size"))


def _dedup_text(rest: dict) -> str:
    rest.pop("duplicate_of", None), rest.pop("near_duplicate_of", None)  # the reason code names the record
    kept, near = rest.pop("kept_because", None), rest.pop("near_duplicates", None)
    numbers = [f"{label} {_number(rest.pop(key))}" for key, label in NEAR_NUMBERS if key in rest]
    text = _verdict(rest)
    if numbers:
        text += f" ({', '.join(numbers)}" + (f"; the other was kept: {kept})" if kept else ")")
    if near:
        text += f"; near duplicates dropped: {', '.join(near)}" + (f" (this one was kept: {kept})" if kept else "")
    return text


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


STEP_TEXT = {"parse": _parse_text, "map": _map_text, "normalize": _change, "mask": _mask_text,
             "review": _review_text, "gate": _gate_text, "dedup": _dedup_text}


def _step_line(step: dict) -> str:
    """One step of a lineage as text. Every key is shown or deliberately left to --json: a key
    a step kind does not know is appended as key=value, so a new step shape never breaks this."""
    rest = dict(step)
    kind = str(rest.pop("step", "?"))
    text = STEP_TEXT.get(kind, _verdict)(rest)
    if rest:
        text = f"{text} {', '.join(f'{k}={_short(v, 60)}' for k, v in rest.items())}".strip()
    return f"{kind:<10} {text}".rstrip()


def render_lineage(result: dict) -> str:
    src = result["source"]
    where = f"{src['file']}:{src['line']}" + (f" (array element {src['index']})" if "index" in src else "")
    head = f"{result['id']}  {result['status']}"
    if result["status"] == "rejected":
        head += f": {result['reason']}"
        if result.get("detail"):
            head += f" ({result['detail']})"
    lines = [head, f"category   {result['category']}", f"source     {where}  md5 {src['md5']}"]
    if src.get("raw_sha256"):
        lines.append(f"raw sha256 {src['raw_sha256']}")
    lines.append(f"raw        {_short(result['raw'])}")
    if result.get("redacted"):
        lines.append(f"redacted   {', '.join(result['redacted'])} (masked in this copy; the raw file has them)")
    lines.append("steps")
    lines += [f"  {i}. {_step_line(step)}" for i, step in enumerate(result["steps"], start=1)]
    lines.append(f"release    {result.get('release')}")
    if "releases" in result:
        lines.append(f"released in tags: {', '.join(result['releases']) or 'none'}")
        if result.get("unreadable_releases"):
            lines.append(f"not checked:     {', '.join(result['unreadable_releases'])} (its data is not in the "
                         f"DVC cache or on the remote; `cqia history ID` shows why)")
    return "\n".join(lines)


def render_history(result: dict) -> str:
    lines = [result["id"]]
    for row in result["releases"]:
        text = f"  {row['rev']:<10} {row['state']}"
        if row.get("fields"):
            text += f" ({', '.join(row['fields'])})"
        if row.get("status") == "rejected":
            text += f" (rejected: {row.get('reason')})"
        if row.get("error"):
            text += f" ({row['error']})"
        lines.append(text)
    unreadable = [row["rev"] for row in result["releases"] if row["state"] == "unreadable"]
    if result["first_release"]:
        lines.append(f"first released in {result['first_release']}; last changed in {result['last_changed']}")
    elif unreadable:
        lines.append(f"not released in the tags read; not checked: {', '.join(unreadable)}")
    elif not result["releases"]:
        lines.append("never released (no release tags yet)")
    else:
        lines.append("never released")
    return "\n".join(lines)


def render_diff(result: dict) -> str:
    t = result["totals"]
    lines = [f"{result['a']} → {result['b']}: {t['added']} added, {t['removed']} removed, {t['modified']} modified"]
    for name, cat in result["categories"].items():
        lines.append(f"  {name}: {len(cat['added'])} added, {len(cat['removed'])} removed, {len(cat['modified'])} modified")
        for rid in cat["added"][:SHOW]:
            lines.append(f"    + {rid}")
        for rid in cat["removed"][:SHOW]:
            lines.append(f"    - {rid}")
        for mod in cat["modified"][:SHOW]:
            lines.append(f"    ~ {mod['id']} ({', '.join(mod['fields'])})")
        hidden = sum(max(0, len(cat[k]) - SHOW) for k in ("added", "removed", "modified"))
        if hidden:
            lines.append(f"    … {hidden} more (use --json for all)")
    return "\n".join(lines)


REPO_HELP = "Path or git URL of the registry. Default: the registry the working directory is in."


def _repo(repo: str | None) -> str:
    """--repo, or the registry the working directory is in (its absolute path from a subdirectory,
    which messages put before git's `rev:path`)."""
    if repo is not None:
        return repo
    root = registry_root(repo_option=True)
    return "." if root == Path(".") else str(root.resolve())


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("record_id", metavar="ID")
    @click.option("--rev", default=None, help="Git revision (tag) of the release; default: the workspace.")
    @click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON.")
    @click.option("--repo", default=None, help=REPO_HELP)
    def lineage(record_id: str, rev: str | None, as_json: bool, repo: str) -> None:
        """Where a record came from, what was done to it, and which releases hold it.

        Works for released and rejected records: raw file, line and md5, the raw
        record verbatim, every step (transforms with before → after, rules,
        review, gates, dedup) and the release tags that released it.

        \b
        Example:
            cqia lineage 100poison-0bcb3a9892336671 --rev v0.1
        """
        result = audit.lineage(record_id, _repo(repo), rev)
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render_lineage(result))

    @cli.command()
    @click.argument("record_id", metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
    @click.option("--repo", default=None, help=REPO_HELP)
    def history(record_id: str, as_json: bool, repo: str) -> None:
        """The record in every release tag: added, changed, unchanged or absent.

        Reads each tag's release through DVC (no checkout).

        \b
        Example:
            cqia history 100poison-0bcb3a9892336671
        """
        result = audit.history(record_id, _repo(repo))
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render_history(result))

    @cli.command()
    @click.argument("rev_a")
    @click.argument("rev_b")
    @click.option("--category", default=None, help="Only this source category.")
    @click.option("--json", "as_json", is_flag=True, help="Print the full diff as JSON.")
    @click.option("--repo", default=None, help=REPO_HELP)
    def diff(rev_a: str, rev_b: str, category: str | None, as_json: bool, repo: str) -> None:
        """Added, removed and modified records between two releases, per category.

        REV_A and REV_B are tags or commits, or `workspace` for data/release/.
        Modified records list the fields that changed.

        \b
        Example:
            cqia diff v0.1 v0.2 --category zhihu
        """
        result = audit.diff(rev_a, rev_b, _repo(repo), category)
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render_diff(result))
