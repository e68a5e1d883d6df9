"""What every stage entry shares: one-line errors and stale temporaries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from cqia.common.errors import CqiaError, disk_full


def run(main: Callable[[], int | None]) -> None:
    """Run a stage's main; a CqiaError, or a full disk, is one line on stderr and exit 1, never a traceback."""
    try:
        code = main()
    except (CqiaError, OSError) as exc:
        if (full := disk_full(exc)) is not None:   # the first file that found the disk full, and `dvc repro`
            exc = full.rerun("dvc repro")
        elif not isinstance(exc, CqiaError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        code = 130
    exit_now(code or 0)


def exit_now(code: int) -> None:
    """End the process with `code` once Python's own shutdown work is done, skipping native teardown.

    Everything Python would do at exit still happens, in the same order: non-daemon threads are
    joined, atexit handlers run (DVC, tempfile, multiprocessing, Ray), stdout and stderr are flushed.
    What is skipped is the C++ static destructors of the extension modules: pyarrow's thread pools
    can still hold a thread there, and destroying it aborts a process whose work is done ("terminate
    called without an active exception", exit -6, about once in 150 `cqia diff` runs on a loaded
    machine; apache/arrow#33975 and #34314). Every output is already renamed into place when this runs.
    """
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`cqia diff | head`): nothing more can be said
            code = code or 1
    os._exit(code)


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
