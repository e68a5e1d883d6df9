"""`cqia export`: a release as alpaca or sharegpt JSON, with LLaMA-Factory's dataset_info.json, or as Firefly's JSON Lines."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from cqia.common.errors import CqiaError
from cqia.common.fileio import HashingWriter, Staging, dumps_line, dumps_pretty, file_digest
from cqia.common.layout import OUT_DIR
from cqia.common.progress import progress
from cqia.common.text import counted
from cqia.registry.export import (
    CONVERTERS,
    DATASET_INFO,
    FORMATS,
    JSON_LINES,
    OVERWRITE_FIX,
    add_dataset_info,
    dataset_info_entry,
    dataset_name,
    file_name,
)

EXPORT_DIR = OUT_DIR / "export"


def read_dataset_info(path: Path):
    if not path.is_file():
        return None
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CqiaError(f"not valid JSON ({exc})", where=str(path),
                        fix="Fix or remove it; cqia export adds its entry to an existing file") from None


def export_release(fmt: str, out: Path, rev: str | None = None, repo: str | None = None,
                   category: str | None = None, force: bool = False) -> dict:
    """Write `<out>/<name>.json` and add `<name>` to `<out>/dataset_info.json` (a JSON Lines format:
    `<out>/<name>.jsonl` alone); return what was written.

    An existing file or description of the same name is overwritten only if it is the same, or with `force`.
    """
    from cqia.common.layout import registry_root
    from cqia.registry.api import Release

    if repo is None:
        root = registry_root(repo_option=True)
        repo = None if root == Path(".") else str(root.resolve())
    release = Release(rev=rev, repo=repo)
    records = release.records(category)  # checks the category before anything is written
    name = dataset_name(fmt, category, rev)
    data_file, info_file = out / file_name(fmt, name), out / DATASET_INFO
    entry = dataset_info_entry(fmt, data_file.name)
    info = None if entry is None else add_dataset_info(read_dataset_info(info_file), name, entry,
                                                       where=str(info_file), force=force)
    convert = CONVERTERS[fmt]
    count = 0
    with Staging() as staging:
        with staging.open(data_file) as raw:
            handle = HashingWriter(raw)
            # One example per line (JSON Lines, or a JSON array), so a release never has to fit in memory.
            lines = fmt in JSON_LINES
            if not lines:
                handle.write(b"[")
            for record in progress(records, f"export {fmt}", total=release.count(category)):
                if lines:
                    handle.write(dumps_line(convert(record)))
                else:
                    handle.write(b",\n" if count else b"\n")
                    handle.write(orjson.dumps(convert(record)))
                count += 1
            if not lines:
                handle.write(b"\n]\n")
        if not force and data_file.is_file() and file_digest(data_file, "sha256") != handle.sha256():
            raise CqiaError("already exists, with other content than this export", where=str(data_file),
                            fix=OVERWRITE_FIX)
        if info is not None:
            with staging.open(info_file) as handle:
                handle.write(dumps_pretty(info))
    return {"format": fmt, "release": release.version, "rev": rev, "category": category, "records": count,
            "dataset": name, "file": data_file.as_posix(),
            "dataset_info": info_file.as_posix() if info is not None else None}


def register(cli: click.Group) -> None:
    @cli.command("export")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
                  help="alpaca: instruction, input, output. sharegpt: conversations of human and gpt turns. "
                       "firefly: Firefly's JSON Lines, a conversation of human and assistant.")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=EXPORT_DIR,
                  show_default=True, help="Directory to write to; e.g. LLaMA-Factory's data/ directory.")
    @click.option("--rev", default=None,
                  help="Git tag, branch or commit to read the release at, through DVC, with no checkout. "
                       "Default: the release in the working tree.")
    @click.option("--repo", default=None,
                  help="Path or git URL of the registry to read from. Default: the registry the working "
                       "directory is in.")
    @click.option("--category", default=None, help="Export one source category only. Default: every record.")
    @click.option("--force", is_flag=True,
                  help="Overwrite a file or dataset_info.json entry of the same name with other content.")
    @click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
    def export(fmt: str, out: Path, rev: str | None, repo: str | None, category: str | None,
               force: bool, as_json: bool) -> None:
        """Export a release for SFT trainers: alpaca or sharegpt JSON with LLaMA-Factory's dataset_info.json, or firefly.

        Writes OUT/coig_cqia_REV[_CATEGORY]_FORMAT.json (REV: the --rev given, or
        `workspace`; a JSON array; every example keeps the record's `id`) and adds
        an entry of the same name to OUT/dataset_info.json, keeping the entries
        already there; firefly writes OUT/coig_cqia_REV[_CATEGORY]_firefly.jsonl
        alone. A file or entry of that name with other content is an error
        unless --force. Train with LLaMA-Factory by
        `dataset: coig_cqia_workspace_alpaca` and `dataset_dir: OUT`.

        \b
        Example:
            cqia export --format sharegpt --rev v0.1 --category zhihu
        """
        result = export_release(fmt, out, rev=rev, repo=repo, category=category, force=force)
        if as_json:
            click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        scope = f"category {category}" if category else "all categories"
        click.echo(f"Exported {counted(result['records'], 'record')} of release {result['release']} ({scope}) as {fmt}:")
        click.echo(f"  {result['file']}")
        if result["dataset_info"]:
            click.echo(f"  {result['dataset_info']}  (dataset \"{result['dataset']}\")")
