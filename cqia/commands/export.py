"""`cqia export`: a release as alpaca or sharegpt JSON, with LLaMA-Factory's dataset_info.json."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from cqia.errors import CqiaError
from cqia.export import CONVERTERS, DATASET_INFO, FORMATS, add_dataset_info, dataset_info_entry, dataset_name
from cqia.fileio import Staging, dumps_pretty
from cqia.progress import progress


def read_dataset_info(path: Path):
    if not path.is_file():
        return None
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CqiaError(f"not valid JSON ({exc})", where=str(path),
                        fix="Fix or remove it; cqia export adds its entry to an existing file") from None


def export_release(fmt: str, out: Path, rev: str | None = None, repo: str | None = None,
                   category: str | None = None) -> dict:
    """Write `<out>/<name>.json` and add `<name>` to `<out>/dataset_info.json`; return what was written."""
    from cqia.api import Release
    from cqia.commands import registry_root

    if repo is None:
        root = registry_root(repo_option=True)
        repo = None if root == Path(".") else str(root.resolve())
    release = Release(rev=rev, repo=repo)
    records = release.records(category)  # checks the category before anything is written
    name = dataset_name(fmt, category)
    data_file, info_file = out / f"{name}.json", out / DATASET_INFO
    info = add_dataset_info(read_dataset_info(info_file), name, dataset_info_entry(fmt, data_file.name),
                            where=str(info_file))
    convert = CONVERTERS[fmt]
    count = 0
    with Staging() as staging:
        with staging.open(data_file) as handle:
            # A JSON array written one example per line, so a release never has to fit in memory.
            handle.write(b"[")
            for record in progress(records, f"export {fmt}", total=release.count(category)):
                handle.write(b",\n" if count else b"\n")
                handle.write(orjson.dumps(convert(record)))
                count += 1
            handle.write(b"\n]\n")
        with staging.open(info_file) as handle:
            handle.write(dumps_pretty(info))
    return {"format": fmt, "release": release.version, "rev": rev, "category": category, "records": count,
            "dataset": name, "file": data_file.as_posix(), "dataset_info": info_file.as_posix()}


def register(cli: click.Group) -> None:
    @cli.command("export")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
                  help="alpaca: instruction, input, output. sharegpt: conversations of human and gpt turns.")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("export"),
                  show_default=True, help="Directory to write to; e.g. LLaMA-Factory's data/ directory.")
    @click.option("--rev", default=None,
                  help="Git tag, branch or commit to read the release at, through DVC, with no checkout. "
                       "Default: the release in the working tree.")
    @click.option("--repo", default=None,
                  help="Path or git URL of the registry to read from. Default: the registry the working "
                       "directory is in.")
    @click.option("--category", default=None, help="Export one source category only. Default: every record.")
    @click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
    def export(fmt: str, out: Path, rev: str | None, repo: str | None, category: str | None,
               as_json: bool) -> None:
        """Export a release for SFT trainers: alpaca or sharegpt JSON, plus LLaMA-Factory's dataset_info.json.

        Writes OUT/coig_cqia[_CATEGORY]_FORMAT.json (a JSON array; every example
        keeps the record's `id`) and adds an entry of the same name to
        OUT/dataset_info.json, keeping the entries already there. Train with
        LLaMA-Factory by `dataset: coig_cqia_alpaca` and `dataset_dir: OUT`.

        \b
        Example:
            cqia export --format sharegpt --rev v0.1 --category zhihu --out export/
        """
        result = export_release(fmt, out, rev=rev, repo=repo, category=category)
        if as_json:
            click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        scope = f"category {category}" if category else "all categories"
        click.echo(f"Exported {result['records']} records of release {result['release']} ({scope}) as {fmt}:")
        click.echo(f"  {result['file']}")
        click.echo(f"  {result['dataset_info']}  (dataset \"{result['dataset']}\")")
