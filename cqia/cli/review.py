"""`cqia review export` and `cqia review import`: the review workflow (library: cqia/registry/review_sheets.py)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from cqia.common.errors import CqiaError
from cqia.common.layout import DEDUP_DIR, OUT_DIR, PARAMS, REVIEWS_DIR, STAGES_DIR, registry_root
from cqia.common.layout import RECORD_SCHEMA as SCHEMA
from cqia.common.text import counted

SHEETS_DIR = OUT_DIR / "review"


def _categories(root: Path):
    from cqia.common.params import load_yaml
    from cqia.ingest.config import load_checked_categories

    return {c.name: c for c in load_checked_categories(load_yaml(root / PARAMS), str(root / PARAMS))}


def sheet_paths(out: Path | None, category: str, root: Path = Path(".")) -> tuple[Path, Path]:
    """`out` as given (relative to the working directory), or the registry's out/review/<category>."""
    stem = out if out is not None else root / SHEETS_DIR / category
    if stem.suffix.lower() in (".jsonl", ".csv"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".jsonl"), stem.with_name(stem.name + ".csv")


def unimported(paths: tuple[Path, ...], recorded: set[str]) -> tuple[Path, int] | None:
    """The first existing sheet among `paths` that holds decisions not yet in data/reviews/, and how many."""
    from cqia.registry import review_sheets as reviewing

    for path in paths:
        if path.is_file():
            try:
                rows = reviewing.read_sheet(path)
            except CqiaError:
                return path, -1              # cannot tell what it holds: keep it
            waiting = sum(1 for row in rows if (row.decision or row.note.strip()) and row.id not in recorded)
            if waiting:
                return path, waiting
    return None


def export_sheet(category: str, sample: int | None, seed: int, out: Path | None, root: Path = Path("."),
                 force: bool = False) -> dict:
    """Write the review sheet of `category` (registry at `root`) to `out` (relative to the working directory).

    A sheet already there that holds decisions or notes not imported yet is kept (an error) unless `force`."""
    from cqia.common.fileio import Staging, read_jsonl
    from cqia.registry import review_sheets as reviewing

    categories = _categories(root)
    if category not in categories:
        raise CqiaError(f"unknown category {category!r}", where=str(root / PARAMS),
                        fix=f"Available categories: {list(categories)}")
    if sample is not None and sample < 1:
        raise CqiaError(f"--sample is {sample}", where="--sample", fix="Give a positive number of records")
    cat = categories[category]
    cdir = root / STAGES_DIR / category
    for path in (cdir / reviewing.ACCEPTED, cdir / reviewing.ACCEPTED_LINEAGE, cdir / reviewing.REJECTS):
        if not path.is_file():
            raise CqiaError(f"no stage output for category '{category}'", where=str(path),
                            fix=f"Run `dvc repro category@{category}` first")
    _, decisions = reviewing.load_reviews(category, root / REVIEWS_DIR)
    dropped = reviewing.load_dedup_drops(category, root / DEDUP_DIR)
    rows = reviewing.pending_rows(reviewing.accepted_entries(cdir), read_jsonl(cdir / reviewing.REJECTS),
                                  set(decisions), dropped, reviewing.Rebuilder(cat, root / SCHEMA), cat.raw)
    chosen = reviewing.sample_rows(rows, sample, seed)
    jsonl_path, csv_path = sheet_paths(out, category, root)
    held = None if force else unimported((csv_path, jsonl_path), set(decisions))
    if held:
        path, waiting = held
        what = "cannot be read, so it may hold decisions" if waiting < 0 else \
            f"has {counted(waiting, 'filled-in row')} (decision or note) not imported yet"
        raise CqiaError(f"the review sheet {what}", where=path.as_posix(),
                        fix=f"Import it first (`cqia review import {path.as_posix()} --reviewer NAME`), "
                            f"write elsewhere (--out), or overwrite it (--force)")
    if chosen:
        with Staging() as staging:
            reviewing.write_sheet(chosen, jsonl_path, csv_path, staging)
    return {"category": category, "pending": len(rows), "written": len(chosen),
            "sample": sample, "seed": seed if sample is not None else None,
            "jsonl": jsonl_path.as_posix() if chosen else None, "csv": csv_path.as_posix() if chosen else None}


def import_sheet(sheet: Path, reviewer: str, date: str | None, root: Path = Path(".")) -> dict:
    """Append the decisions of `sheet` (relative to the working directory) to the registry at `root`."""
    from cqia.common.fileio import Staging
    from cqia.registry import review_sheets as reviewing

    reviewer = reviewing.check_reviewer(reviewer)
    date = reviewing.check_date(date)
    rows = reviewing.read_sheet(sheet)
    categories = _categories(root)
    states: dict = {}

    def state_of(name: str):
        if name not in states:
            states[name] = reviewing.category_state(name, root / STAGES_DIR, root / REVIEWS_DIR, root / DEDUP_DIR)
        return states[name]

    plan = reviewing.plan_import(rows, sheet, list(categories), state_of)
    appended = {}
    with Staging() as staging:
        for name, decided in plan["append"].items():
            target = states[name].reviews
            old = target.read_bytes() if target.is_file() else b""
            if not old.strip():
                old = b""                                 # no decisions yet (fileio.EMPTY_JSONL): start the file
            elif not old.endswith(b"\n"):
                old += b"\n"
            with staging.open(target) as out:
                out.write(old + reviewing.decision_lines(decided, reviewer, date))
            appended[name] = {"file": target.as_posix(), "accept": sum(r.decision == "accept" for r in decided),
                              "reject": sum(r.decision == "reject" for r in decided)}
    return {"sheet": sheet.as_posix(), "reviewer": reviewer, "date": date, "appended": appended,
            "already_recorded": plan["already_recorded"], "undecided": plan["undecided"]}


def register(cli: click.Group) -> None:
    @cli.group("review")
    def review() -> None:
        """Review sheets: export pending records, import a reviewer's decisions.

        A pending record is a `review_pending` reject, or a released record that is not
        human_verified, with no decision in data/reviews/<category>.jsonl yet; records that
        dedup drops are not pending. Run anywhere in the registry, after `dvc repro`.

        \b
        Example:
            cqia review export human_value --sample 20
            cqia review import out/review/human_value.csv --reviewer wang.li
        """

    @review.command("export")
    @click.argument("category")
    @click.option("--sample", type=int, default=None,
                  help="Write only N pending records, chosen by a seeded hash of the id (same N, same seed, "
                       "same records).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
    @click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Sheet path without suffix; writes OUT.jsonl and OUT.csv [default: out/review/CATEGORY].")
    @click.option("--force", is_flag=True,
                  help="Overwrite a sheet that holds decisions or notes not imported yet (they are lost).")
    @click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
    def export_cmd(category: str, sample: int | None, seed: int, out: Path | None, force: bool,
                   as_json: bool) -> None:
        """Write a review sheet of CATEGORY's pending records, as JSON Lines and CSV.

        Each row: id, decision and note (for the reviewer to fill in), the record's fields as
        they would be released, its source (raw file and line) and hints (which steps changed it).
        A sheet already there with decisions not imported yet is kept: import it first, or --force.

        \b
        Example:
            cqia review export human_value --sample 20 --out out/review/hv-batch1
        """
        result = export_sheet(category, sample, seed, out, registry_root(), force)
        if as_json:
            click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        if not result["written"]:
            click.echo(f"No pending records in {category}; no sheet written.")
            return
        click.echo(f"Wrote {result['written']} of {counted(result['pending'], 'pending record')} of {category} to "
                   f"{result['jsonl']} and {result['csv']}.")
        click.echo(f"Fill in 'decision' (accept or reject) and 'note', then run: "
                   f"cqia review import {result['csv']} --reviewer NAME")

    @review.command("import")
    @click.argument("sheet", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--reviewer", required=True, help="Who made the decisions (recorded with each one).")
    @click.option("--date", default=None, help="Date of the decisions, YYYY-MM-DD [default: today].")
    @click.option("--json", "as_json", is_flag=True, help="Print what was appended as JSON.")
    def import_cmd(sheet: Path, reviewer: str, date: str | None, as_json: bool) -> None:
        """Check a filled-in review sheet (.jsonl or .csv) and append its decisions to data/reviews/.

        Rows with an empty decision are skipped. Unknown ids, ids that a rule rejected or dedup
        dropped, an id twice on the sheet, and a decision that contradicts one already recorded
        are errors, and then nothing is written.
        A decision already recorded is not written again. Run `dvc repro` afterwards: accepted
        records become human_verified, rejected ones are dropped as review_rejected.

        \b
        Example:
            cqia review import out/review/human_value.csv --reviewer wang.li
        """
        result = import_sheet(sheet, reviewer, date, registry_root())
        if as_json:
            click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
            return
        if not result["appended"]:
            click.echo("No new decisions.", nl=False)
        for name, info in result["appended"].items():
            click.echo(f"Appended {counted(info['accept'] + info['reject'], 'decision')} to {info['file']} "
                       f"({info['accept']} accept, {info['reject']} reject).", nl=False)
        click.echo(f" {result['already_recorded']} already recorded, {result['undecided']} left undecided.")
        if result["appended"]:
            click.echo("Run `dvc repro` to apply them.")
