"""What every stage entry shares: one-line errors and stale temporaries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from cqia.common.errors import CqiaError


def run(main: Callable[[], int | None]) -> None:
    """Run a stage's main; a CqiaError is one line on stderr and exit 1, never a traceback."""
    try:
        code = main()
    except CqiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def arguments(module: str, doc: str | None, flags: tuple[str, ...], argv: list[str] | None):
    """Parse a stage's arguments: every path comes from dvc.yaml as a required flag."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in flags:
        parser.add_argument(flag, required=True)
    return parser.parse_args(argv)


def sweep(*targets: str | Path) -> None:
    """Remove temporaries a killed run left next to these outputs."""
    import shutil

    for target in targets:
        target = Path(target)
        if not target.parent.is_dir():
            continue
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
