"""Where the registry keeps things: every path of the working tree, named once.

dvc.yaml passes each stage its inputs and outputs as arguments (tests/test_structure.py checks
that they are these names); the CLI and the API read them from here. Paths are relative to the
registry's root.
"""

from __future__ import annotations

from pathlib import Path

from cqia.common.errors import CqiaError

PARAMS = Path("params.yaml")
RAW_DIR = Path("data/raw")                      # data/raw/<category>/<raw file>
REVIEWS_DIR = Path("data/reviews")              # data/reviews/<category>.jsonl
STAGES_DIR = Path("data/stages")                # data/stages/<category>/: the category stage's outputs
ACCEPTED_FILE = "accepted.jsonl.zst"            # in STAGES_DIR/<category>/: the accepted records, zstd
ACCEPTED_LINEAGE_FILE = "lineage.jsonl.zst"     # their lineage, line for line, zstd
REJECTS_FILE = "rejects.jsonl"                  # each reject's lineage, with its reason code
KEYS_FILE = "keys.parquet"                      # what the dedup stage compares (cqia/dedup/keys.py)
STAGE_METRICS_FILE = "metrics.json"
DEDUP_DIR = Path("data/dedup")                  # data/dedup/<category>.jsonl
PUBLISH_DIR = Path("data/publish")              # data/publish/<category>.json
RELEASE_DIR = Path("data/release")              # the release: <category>/train.*, lineage/, manifest, card
RELEASE_METRICS = Path("data/release_metrics.json")
REPORTS_DIR = Path("data/reports")
RECORD_SCHEMA = Path("schemas/record.schema.json")
EXPECTATIONS_DIR = Path("expectations")
MANIFEST = "manifest.json"                      # in RELEASE_DIR

# What commands write for people, not for the pipeline (review sheets, exports, `dvc plots show`),
# unless told otherwise: one git-ignored directory outside data/, so no stage reads it and
# `cqia release` does not find the tree dirty.
OUT_DIR = Path("out")


def reviews_file(category: str) -> Path:
    return REVIEWS_DIR / f"{category}.jsonl"


def dedup_file(category: str) -> Path:
    return DEDUP_DIR / f"{category}.jsonl"


def registry_root(repo_option: bool = False) -> Path:
    """The registry the working directory is in, found the way git finds its top level.

    The nearest directory, from the working directory up, that holds `dvc.yaml` and
    `.dvc/`; the search stops at a directory that holds `.git` and is not a registry
    (another repository). The result is relative to the working directory (`.` at the
    top, `..` from data/), so a path joined to it names the file as the user sees it.
    `repo_option`: the command has --repo, which the error then offers.
    """
    cwd = Path.cwd()
    for up, directory in enumerate([cwd, *cwd.parents]):
        if (directory / "dvc.yaml").is_file() and (directory / ".dvc").is_dir():
            return Path(*[".."] * up)
        if (directory / ".git").exists():
            break
    raise CqiaError("not inside a cqia registry (no dvc.yaml and .dvc/ here or above)", where=str(cwd),
                    fix="cd into the registry's clone" + (", or pass --repo PATH" if repo_option else ""))
