"""`cqia check`: params.yaml checked in full, as the category stages will read it, without building."""

from __future__ import annotations

import click
import orjson

from cqia.common.errors import CqiaError
from cqia.common.layout import EXPECTATIONS_DIR, PARAMS, RAW_DIR, REVIEWS_DIR, registry_root
from cqia.common.text import counted


def check_registry(root) -> dict:
    """Every category's shape, format, rules and normalisation, its raw files, reviews file and suite."""
    from cqia.common.params import load_yaml
    from cqia.ingest.config import load_checked_categories

    params_path = root / PARAMS
    categories = load_checked_categories(load_yaml(params_path), params_path.as_posix())
    for cat in categories:
        for name in cat.raw:
            path = root / RAW_DIR / cat.name / name
            if not path.is_file() and not path.with_name(path.name + ".dvc").is_file():
                raise CqiaError(f"raw file '{name}' listed in params is missing", where=path.as_posix(),
                                fix=f"Put it there (or `dvc pull` it), or fix categories.{cat.name}.raw")
        reviews = root / REVIEWS_DIR / f"{cat.name}.jsonl"
        if not reviews.is_file():
            raise CqiaError("review file not found", where=reviews.as_posix(),
                            fix="Create it (a blank line means no decisions yet)")
        suite = root / EXPECTATIONS_DIR / f"{cat.suite}.json"
        if not suite.is_file():
            raise CqiaError(f"suite '{cat.suite}' of category '{cat.name}' not found", where=suite.as_posix(),
                            fix="Write the suite, or set categories.<name>.suite to an existing one")
    return {"params": params_path.as_posix(), "categories": [c.name for c in categories]}


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--json", "as_json", is_flag=True, help="Print what was checked as JSON.")
    def check(as_json: bool) -> None:
        """Check params.yaml in full without building: every category's format, rules and
        normalisation knobs, and that its raw files, reviews file and suite exist.

        The category stages run the same checks; the other stages read only the categories'
        names and order, so a typo in a rule fails here and at `dvc repro category@<name>`.

        \b
        Example:
            cqia check
        """
        result = check_registry(registry_root())
        if as_json:
            click.echo(orjson.dumps(result).decode())
        else:
            click.echo(f"{result['params']}: {counted(len(result['categories']), 'category', 'categories')} "
                       f"checked ({', '.join(result['categories'])}): formats, rules, normalisation, raw files, "
                       "reviews and suites")
