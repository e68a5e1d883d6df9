"""Where the registry keeps things: every path of the working tree, named once.

dvc.yaml passes each stage its inputs and outputs as arguments (tests/test_structure.py checks
that they are these names); the CLI and the API read them from here. Paths are relative to the
registry's root.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
RAW_DIR = Path("data/raw")                      # data/raw/<category>/<raw file>
REVIEWS_DIR = Path("data/reviews")              # data/reviews/<category>.jsonl
STAGES_DIR = Path("data/stages")                # data/stages/<category>/: the category stage's outputs
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
