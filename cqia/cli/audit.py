"""`cqia lineage`, `cqia history`, `cqia diff`: record-level audit of releases."""

from __future__ import annotations

import click
import orjson

from cqia.registry import audit

SHOW = 10


def _json(obj) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


def _short(value, width: int = 120) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _step_line(step: dict) -> str:
    kind = step["step"]
    if kind == "parse":
        text = f"{step['format']} ({step['layout']}): {step['result']}"
    elif kind == "map":
        text = "defaults for " + (", ".join(step["defaults"]) or "nothing")
        if step.get("dropped_keys"):
            text += f"; dropped keys {', '.join(step['dropped_keys'])}"
    elif kind == "normalize":
        text = f"{step['field']} [{', '.join(step['rules'])}]: {_short(step['before'], 50)} → {_short(step['after'], 50)}"
    elif kind == "review":
        text = f"{step['decision']} by {step['reviewer']} on {step['date']}"
        if step.get("note"):
            text += f" ({step['note']})"
    elif kind == "gate":
        text = f"{step['gate']} suite '{step['suite']}': {step['result']}"
    else:
        text = step.get("result", "")
        extra = {k: v for k, v in step.items() if k not in ("step", "result")}
        if extra:
            text += " " + ", ".join(f"{k}={_short(v, 60)}" for k, v in extra.items())
    return f"{kind:<10} {text}"


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
    if result["first_release"]:
        lines.append(f"first released in {result['first_release']}; last changed in {result['last_changed']}")
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


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("record_id", metavar="ID")
    @click.option("--rev", default=None, help="Git revision (tag) of the release; default: the workspace.")
    @click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON.")
    @click.option("--repo", default=".", show_default=True, help="The registry's git repository.")
    def lineage(record_id: str, rev: str | None, as_json: bool, repo: str) -> None:
        """Where a record came from, what was done to it, and which releases hold it.

        Works for released and rejected records: raw file, line and md5, the raw
        record verbatim, every step (transforms with before → after, rules,
        review, gates, dedup) and the release tags that released it.

        \b
        Example:
            cqia lineage 100poison-0bcb3a9892336671 --rev v0.1
        """
        result = audit.lineage(record_id, repo, rev)
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render_lineage(result))

    @cli.command()
    @click.argument("record_id", metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
    @click.option("--repo", default=".", show_default=True, help="The registry's git repository.")
    def history(record_id: str, as_json: bool, repo: str) -> None:
        """The record in every release tag: added, changed, unchanged or absent.

        Reads each tag's release through DVC (no checkout).

        \b
        Example:
            cqia history 100poison-0bcb3a9892336671
        """
        result = audit.history(record_id, repo)
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render_history(result))

    @cli.command()
    @click.argument("rev_a")
    @click.argument("rev_b")
    @click.option("--category", default=None, help="Only this source category.")
    @click.option("--json", "as_json", is_flag=True, help="Print the full diff as JSON.")
    @click.option("--repo", default=".", show_default=True, help="The registry's git repository.")
    def diff(rev_a: str, rev_b: str, category: str | None, as_json: bool, repo: str) -> None:
        """Added, removed and modified records between two releases, per category.

        REV_A and REV_B are tags or commits, or `workspace` for data/release/.
        Modified records list the fields that changed.

        \b
        Example:
            cqia diff v0.1 v0.2 --category zhihu
        """
        result = audit.diff(rev_a, rev_b, repo, category)
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if as_json else render_diff(result))
