"""The category stage on a Ray cluster: a raw file's chunks judged as Ray tasks, in file order.

    CQIA_EXECUTOR=ray RAY_ADDRESS=<head>:6379 dvc repro

The same work as cqia/ingest/parallel.py's forked workers, handed to Ray
instead: this process (the driver) cuts each raw file into the same chunks
(`Workers._chunks`), sends each as a task (`judge` on a Ray worker), takes the
results in chunk order and makes each record's occurrence right
(`Workers._take`), so the stage writes the bytes a local run writes. What
differs is only the transport:

* Chunks go to the workers as bytes: the driver reads the raw file (it has
  to: DVC hashes it and the stage takes its md5), and every output byte comes
  back to it, since it alone writes the outputs in order. docs/ray.md says why
  workers do not read raw files from S3 themselves.
* At most `in_flight` tasks are out at a time (DEPTH per CPU of the cluster,
  and never more than IN_FLIGHT_BYTES of chunks), so the driver's memory and
  the object stores' stay bounded whatever the file's size.
* The workers run this process's code: `cqia` is shipped with the job
  (Ray's `py_modules`), and a worker checks that the packages which decide
  the output's bytes (Python's Unicode tables, orjson, OpenCC, rensa, the JSON
  Schema validators, numpy) are the versions the driver has, before it judges.
  Each worker process builds the processor from the pickled `JudgeSpec` once.
* A task is not retried (`max_retries=0`): a task that raised, a worker
  process that was killed (the OOM killer, Ray's memory monitor) or a node
  that died ends the stage with one line naming the raw file and the chunk,
  and nothing is written (cqia.common.fileio's Staging). Rerunning the stage
  starts afresh; the outcomes do not depend on which attempt made them.

Files of one chunk or less are judged in this process, as with local workers;
Ray is joined (`ray.init`) when the first larger file needs it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from cqia.common.errors import CqiaError
from cqia.ingest.judge import Processor, Source
from cqia.ingest.parallel import DEPTH, Chunk, Judged, Workers, chunk_bytes, judge
from cqia.ingest.written import JudgeSpec, Render

IN_FLIGHT_BYTES = 512 << 20     # chunks out at a time, in bytes: each is held by the driver until its result is taken
# The packages whose versions decide the bytes of the outputs (besides this code, which travels with the job).
OUTPUT_PACKAGES = ("orjson", "opencc", "rensa", "jsonschema-rs", "jsonschema", "numpy")
# Test hook, used only by tests/test_ray_e2e.py: CQIA_TEST_RAY_FAULT=<chunk>:raise makes the task of that
# chunk (its number in the file) raise; <chunk>:hold:<file> makes it write its pid to <file> and wait to be killed.
FAULT_ENV = "CQIA_TEST_RAY_FAULT"

_built: dict[str, tuple[Processor, Render]] = {}      # in a Ray worker process: the spec it judges with


def environment() -> dict[str, str]:
    """What, besides the code, decides the output's bytes: Python's version and Unicode tables, and packages."""
    import sys
    import unicodedata
    from importlib import metadata

    found = {"python": "%d.%d" % sys.version_info[:2], "unicode": unicodedata.unidata_version}
    for name in OUTPUT_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def judge_chunk(key: str, box: list, wanted: dict[str, str], chunk: Chunk) -> Judged:
    """A Ray task: judge one chunk with the spec in `box` (an object ref, fetched once per worker process)."""
    built = _built.get(key)
    if built is None:
        import ray

        mine = environment()
        if mine != wanted:
            node = ray.get_runtime_context().get_node_id()[:12]
            other = ", ".join(f"{name} {mine[name]} (driver: {wanted.get(name)})"
                              for name in mine if mine[name] != wanted.get(name))
            raise CqiaError(f"the Ray worker on node {node} has {other}: its outputs could differ",
                            where=f"{chunk.source.file}: chunk {chunk.number} ({chunk.span})",
                            fix="Install requirements.lock on every node of the cluster; nothing was written")
        spec: JudgeSpec = ray.get(box[0])
        _built.clear()
        built = _built[key] = spec.build()
    _fault(chunk)
    return judge(*built, chunk)


def _fault(chunk: Chunk) -> None:
    number, _, action = os.environ.get(FAULT_ENV, "").partition(":")
    if number != str(chunk.number):
        return
    if action == "raise":
        raise ZeroDivisionError(f"{FAULT_ENV}: a fault in chunk {number}")
    if action.startswith("hold:"):
        Path(action.removeprefix("hold:")).write_text(str(os.getpid()))
        time.sleep(600)
        os.kill(os.getpid(), signal.SIGKILL)        # nobody killed it: die anyway, as the test expects


class RayWorkers(Workers):
    """The category stage's chunks as Ray tasks: `Workers`' chunks and ordering, Ray's transport."""

    def __init__(self, spec: JudgeSpec, processor: Processor, render: Render, chunk: int | None = None):
        super().__init__(processor, render, count=0, chunk=chunk or chunk_bytes())
        self.spec = spec
        self.in_flight = 0          # tasks out at a time, once connected
        self._ray: Any = None
        self._task: Any = None
        self._box: list = []
        self._key = ""

    def _in_chunks(self, raw: Any) -> bool:
        return raw.path.stat().st_size > self.chunk

    def _start(self) -> None:
        if self._ray is not None:
            return
        try:
            import ray
        except ImportError:
            raise CqiaError("CQIA_EXECUTOR is 'ray', but Ray is not installed", fix="Install it (pip install "
                            "'cqia-registry[ray]'; `make` installs it from requirements.lock), or unset "
                            "CQIA_EXECUTOR to use this machine's cores") from None
        import cqia

        address = os.environ.get("RAY_ADDRESS") or "auto"
        env_vars = {FAULT_ENV: os.environ[FAULT_ENV]} if os.environ.get(FAULT_ENV) else {}
        try:
            _reachable(address)
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"py_modules": [str(Path(cqia.__file__).parent)],
                                  "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars})
        except (OSError, RuntimeError, ValueError) as exc:
            raise CqiaError(f"cannot join the Ray cluster at {address!r} ({_first_line(exc)})",
                            where="CQIA_EXECUTOR=ray", fix="Start one (`ray start --head`) and set RAY_ADDRESS to "
                            "its address (<head>:6379), or unset CQIA_EXECUTOR to use this machine's cores") from None
        self._ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            self.close()
            raise CqiaError(f"the Ray cluster at {address!r} has no CPU to run tasks on", where="CQIA_EXECUTOR=ray",
                            fix="Start its nodes with CPUs (`ray start --num-cpus=N`)")
        self.count = cpus
        self.in_flight = max(2, min(DEPTH * cpus, IN_FLIGHT_BYTES // self.chunk))
        self._task = ray.remote(num_cpus=1, max_retries=0)(judge_chunk)
        ref = ray.put(self.spec)
        self._box, self._key = [ref], ref.hex()       # in a list: a worker fetches it only when it builds
        self._wanted = environment()

    def _parallel(self, source: Source, raw: Any) -> Iterator[Any]:
        self._start()
        chunks = self._chunks(source, raw)
        out: deque[tuple[Any, Chunk]] = deque()
        seen_object = [False]

        def submit() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                out.append((self._task.remote(self._key, self._box, self._wanted, chunk), chunk))
                self.chunks_sent += 1

        for _ in range(self.in_flight):
            submit()
        while out:
            ref, chunk = out.popleft()
            judged = self._result(ref, chunk)
            submit()                                # before the results are written: keep the cluster busy
            yield from self._take(judged, chunk, raw, seen_object)

    def _result(self, ref: Any, chunk: Chunk) -> Judged:
        """The task's result; its failure as one line naming the raw file and the chunk."""
        exceptions = self._ray.exceptions
        where = f"{chunk.source.file}: chunk {chunk.number} ({chunk.span})"
        again = "Run the stage again"
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, CqiaError):
                raise cause from None
            raise CqiaError(f"a Ray task failed: {type(cause).__name__}: {_first_line(cause)}", where=where,
                            fix=f"{again}; if it fails again, run it on this machine (unset CQIA_EXECUTOR) for "
                                "the traceback; nothing was written") from None
        except exceptions.OutOfMemoryError:
            raise CqiaError("Ray's memory monitor killed the worker judging it: its node ran low on memory",
                            where=where, fix=f"{again} with fewer tasks per node (`ray start --num-cpus=N`) or "
                                             "on nodes with more memory; nothing was written") from None
        except exceptions.WorkerCrashedError:
            raise CqiaError("the Ray worker process judging it died (killed, or out of memory)", where=where,
                            fix=f"{again}; if it dies again, look for the OOM killer in `dmesg` on its node and "
                                "in Ray's logs (`ray logs`); nothing was written") from None
        except exceptions.RayError as exc:
            raise CqiaError(f"Ray could not run its task ({type(exc).__name__}: {_first_line(exc)})", where=where,
                            fix=f"Check the cluster (`ray status`), then {again.lower()}; nothing was "
                                "written") from None

    def _pump(self, block: bool) -> None:
        """Nothing to move by hand: Ray sends the chunks and fetches the results."""

    def close(self, kill: bool = False) -> None:
        """Leave the cluster: the job's tasks still running end with it (its workers are stopped)."""
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None


def _reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast if a `host:port` address does not answer: Ray itself would wait for it for minutes."""
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
