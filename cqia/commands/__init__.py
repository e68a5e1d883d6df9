"""CLI command modules. Each module defines `register(cli)`, which adds its commands
to the `cqia` group; cqia/cli.py loads every module here in name order."""

from pathlib import Path

# Where commands write what is for people, not for the pipeline (review sheets, exports), unless
# told otherwise: one git-ignored directory (/out/ in .gitignore), outside data/, so no stage
# reads it and `cqia release` does not find the tree dirty. DVC's `plots show` writes there too
# (plots.out_dir in .dvc/config).
OUT_DIR = Path("out")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for one: "1 record", "2 records", "0 records"; `plural` for an
    irregular noun ("1 category", counted(2, "category", "categories"))."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
