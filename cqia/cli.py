"""The `cqia` command line: a thin click layer over the library.

Every command's help ends with an example; errors are one line that names
the object and the fix.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from cqia.errors import CqiaError

RELEASE_DIR = Path("data/release")
RELEASE_METRICS = Path("data/release_metrics.json")


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CqiaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=Group)
@click.version_option(package_name="cqia-registry")
def cli() -> None:
    """cqia: build, release and audit the COIG-CQIA data registry.

    \b
    Example:
        cqia summary
    """


def render_summary(metrics: dict, release_dir: str) -> str:
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
    lines = [f"Release {metrics['version']}: {metrics['released']} records in {release_dir}/", ""]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [row[j].rjust(widths[j]) for j in (1, 2, 3)]
        lines.append("  ".join(cells + [row[4]]).rstrip())
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 18)
    lines += ["", f"Manifest: {release_dir}/manifest.json   Lineage: {release_dir}/lineage/<category>/",
              f"Dataset card: {release_dir}/README.md"]
    return "\n".join(lines)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the release metrics as JSON.")
def summary(as_json: bool) -> None:
    """Records per category in the built release: raw, released, rejected by reason.

    \b
    Example:
        cqia summary
    """
    from cqia.commands import registry_root

    root = registry_root()
    path = root / RELEASE_METRICS
    if not path.is_file():
        raise CqiaError("no release built yet", where=str(path), fix="Run `make repro` (or `dvc repro`)")
    metrics = orjson.loads(path.read_bytes())
    if as_json:
        click.echo(orjson.dumps(metrics, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_summary(metrics, (root / RELEASE_DIR).as_posix()))


def _register_commands() -> None:
    import importlib
    import pkgutil

    import cqia.commands

    for module in sorted(m.name for m in pkgutil.iter_modules(cqia.commands.__path__)):
        importlib.import_module(f"cqia.commands.{module}").register(cli)


_register_commands()


def main() -> None:
    cli(prog_name="cqia")


if __name__ == "__main__":
    main()
