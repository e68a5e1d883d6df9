"""The `cqia` command line: a thin click layer over the library.

Every command's help ends with an example; errors are one line that names
the object and the fix.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from cqia.common.errors import CqiaError, DiskFull, disk_full
from cqia.common.layout import RELEASE_DIR, RELEASE_METRICS
from cqia.common.text import counted

COMMAND_LINE = "cqia.command_line"


class Group(click.Group):
    """The `cqia` group: a CqiaError from any command, or a full disk, is one line on stderr and exit 1;
    when the command was given --json, that line is a JSON object: {"error", "where", "fix"}."""

    def parse_args(self, ctx, args):
        ctx.meta.setdefault(COMMAND_LINE, list(args))  # meta is shared with the subcommands' contexts
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (CqiaError, OSError) as exc:
            if (full := disk_full(exc)) is not None:
                exc = rerun(full, ctx)
            elif not isinstance(exc, CqiaError):
                raise
            if wants_json(ctx.meta.get(COMMAND_LINE, [])):
                click.echo(orjson.dumps({"error": exc.bare, "where": exc.where, "fix": exc.fix}).decode(), err=True)
            else:
                click.echo(f"error: {exc}", err=True)
            sys.exit(1)


def rerun(full: DiskFull, ctx: click.Context) -> DiskFull:
    """A full disk's error, its fix naming this command line (and --out, where the command has it)."""
    import shlex

    args = ctx.meta.get(COMMAND_LINE, [])
    command = ctx.command
    for word in args:   # the subcommand given (`review export`): does it take --out?
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
    has_out = any("--out" in p.opts for p in command.params if isinstance(p, click.Option))
    elsewhere = " (or pass --out a directory on another filesystem)" if has_out else ""
    return full.rerun(shlex.join(["cqia", *args]), elsewhere)


def wants_json(args: list[str]) -> bool:
    """Whether the command line gives --json (before a `--`, after which words are arguments)."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)


@click.group(cls=Group)
@click.version_option(package_name="cqia-registry")
def cli() -> None:
    """cqia: build, release and audit the COIG-CQIA data registry.

    \b
    Example:
        cqia summary
    """


def render_summary(metrics: dict, release_dir: str, rev: str | None = None) -> str:
    """The summary table of release metrics; `rev`: the revision they were read at (None: the workspace)."""
    rows = [("category", "raw", "released", "rejected", "rejected by reason")]
    total_raw = total_rel = total_rej = 0
    for name, cat in metrics["categories"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in cat["rejected_by_reason"].items()) or "-"
        rows.append((name, str(cat["raw"]), str(cat["released"]), str(cat["rejected"]), reasons))
        total_raw += cat["raw"]
        total_rel += cat["released"]
        total_rej += cat["rejected"]
    rows.append(("total", str(total_raw), str(total_rel), str(total_rej), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    at = f" at {rev}" if rev else ""
    lines = [f"Release {metrics['version']}: {counted(metrics['released'], 'record')} in {release_dir}/{at}", ""]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [row[j].rjust(widths[j]) for j in (1, 2, 3)]
        lines.append("  ".join(cells + [row[4]]).rstrip())
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 18)
    if rev:
        footer = [f"Read it without a checkout: cqia lineage ID --rev {rev}, cqia export --rev {rev}, "
                  f"cqia verify --rev {rev}"]
    else:
        footer = [f"Manifest: {release_dir}/manifest.json   Lineage: {release_dir}/lineage/<category>/",
                  f"Dataset card: {release_dir}/README.md"]
    return "\n".join(lines + [""] + footer)


@cli.command()
@click.option("--rev", default=None, metavar="REV",
              help="A release tag (or branch, commit): its release metrics, read with git. Default: the workspace.")
@click.option("--json", "as_json", is_flag=True, help="Print the release metrics as JSON.")
def summary(rev: str | None, as_json: bool) -> None:
    """Records per category in the built release: raw, released, rejected by reason.

    \b
    Example:
        cqia summary
        cqia summary --rev v0.1
    """
    from cqia.common.layout import registry_root

    root = registry_root()
    metrics = release_metrics(root, rev)
    if as_json:
        click.echo(orjson.dumps(metrics, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_summary(metrics, (root / RELEASE_DIR if rev is None else RELEASE_DIR).as_posix(), rev))


def release_metrics(root: Path, rev: str | None) -> dict:
    """data/release_metrics.json of the registry at `root`: in the workspace, or committed at `rev`."""
    from cqia.registry import api
    from cqia.registry import releases as releasing

    if rev is None:
        path = root / RELEASE_METRICS
        if not path.is_file():
            raise CqiaError("no release built yet", where=str(path), fix="Run `make repro` (or `dvc repro`)")
        return orjson.loads(path.read_bytes())
    where = f"{rev}:{RELEASE_METRICS.as_posix()}"
    if releasing.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root, check=False).returncode:
        raise api.unknown_revision(rev, root, where)
    data = releasing.git_show(root, rev, f"./{RELEASE_METRICS.as_posix()}")  # ./: relative to root, not git's top
    if data is None:
        raise CqiaError("no release at this revision", where=where,
                        fix="Pass a revision that has one (`git tag` lists the releases)")
    return orjson.loads(data)


def _register_commands() -> None:
    """Every module of this package is a command group with a `register(cli)`."""
    import importlib
    import pkgutil

    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}").register(cli)


_register_commands()


def main() -> None:
    """The `cqia` console script: click's exit code, through `exit_now` (see there why)."""
    from cqia.common.entry import exit_now

    try:
        cli(prog_name="cqia")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    exit_now(code)


if __name__ == "__main__":
    main()
