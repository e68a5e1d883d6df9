"""Where the category stage's chunks are judged: this machine's cores (default) or a Ray cluster.

    CQIA_EXECUTOR=local     forked worker processes on this machine (cqia/ingest/parallel.py)
    CQIA_EXECUTOR=ray       tasks on the Ray cluster at RAY_ADDRESS, or the one Ray's own
                            config finds (cqia/ingest/ray_executor.py, docs/ray.md)

Like CQIA_WORKERS, it is an environment setting and not a DVC param: the
outputs are the same bytes whichever executor made them, so changing it
reruns nothing.
"""

from __future__ import annotations

import os

from cqia.common.errors import CqiaError
from cqia.ingest.parallel import Workers, worker_count
from cqia.ingest.written import JudgeSpec

EXECUTOR_ENV = "CQIA_EXECUTOR"
EXECUTORS = ("local", "ray")


def executor_name(environ: dict[str, str] | None = None) -> str:
    """`CQIA_EXECUTOR`: 'local' (also when unset or empty) or 'ray'."""
    value = (os.environ if environ is None else environ).get(EXECUTOR_ENV, "").strip()
    if not value:
        return "local"
    if value not in EXECUTORS:
        raise CqiaError(f"{EXECUTOR_ENV} is {value!r}", fix=f"Use one of {list(EXECUTORS)}, or unset it "
                        "(local: worker processes on this machine)")
    return value


def open_workers(spec: JudgeSpec, environ: dict[str, str] | None = None) -> Workers:
    """The category stage's workers for `spec`, on the executor `CQIA_EXECUTOR` names.

    Either one judges small files in this process and gives every raw record's
    written form in file order (`outcomes`); `processor` is this process's.
    """
    name = executor_name(environ)
    processor, render = spec.build()
    if name == "ray":
        from cqia.ingest.ray_executor import RayWorkers

        return RayWorkers(spec, processor, render)
    return Workers(processor, render, worker_count(environ))
