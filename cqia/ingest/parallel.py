"""The category stage on every core: a raw file's records judged by forked workers, in file order.

    with Workers(processor, render, worker_count()) as pool:
        for name in raw_files:
            for kept in pool.outcomes(source, raw):   # raw: the file's RawItems (path, format, layout)
                ...                                   # render's output for each raw record, in file order

`render(outcomes) -> list` is the stage's: it turns outcomes into what the
stage keeps of them (its output lines as bytes, the gate's row, the keys
row), one for each outcome, from the outcomes alone. It runs where the
outcomes are made, so a worker sends back bytes and short tuples, never
record dicts.

What comes out is what the sequential run (`Processor.process`, then
`render`) gives, byte for byte (tests/test_parallel.py checks it):

* Chunks. The main process reads a JSON Lines file in chunks of whole lines
  (`CHUNK_BYTES`, with the number of the first line); a JSON array is scanned
  whole first (`scan_json_array` raises its file problems before any record is
  judged, as the sequential run does) and its elements are cut into chunks.
  Chunk i goes to worker i % n, at most `DEPTH` chunks per worker are out at a
  time (memory stays bounded), and results are taken in chunk order.
* Occurrences. A record's id numbers the byte-identical raw records of the
  category in file order (`Processor.next_occurrence`). A worker cannot see
  the copies in other chunks: it judges every record as a first copy and
  sends its `duplicate_key`; the main process counts the keys in file order
  and judges again, itself, the few records that are not first copies.
* Review decisions. A worker says which of its records had a decision
  applied; the main process marks those decisions used, for the records it
  keeps, so `unused_decisions` ends as in one process.
* File problems (a truncated last line; a first record in another layout) come
  back with their place and are raised where the sequential run raises them,
  after the records before them, as the same one-line error.
* Counting. `raw.records`, the raw records the accounting gate compares, is
  counted by the workers apart from the parser (non-blank lines, array
  elements), as `RawItems` counts them.
* Errors. A CqiaError in a worker is raised in the main process as itself
  (one line, `cqia.common.entry.run`); anything else with the worker's traceback. A
  worker that dies (the OOM killer) fails the stage with a message naming
  the signal; workers end when the main process does.

The sequential run is kept: `CQIA_WORKERS=1`, one core, and files of one
chunk or less run `Processor.process` in the main process. Workers are
forked (Linux), so they inherit the processor and `render` without pickling.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import signal
import socket
import struct
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from cqia.common.errors import CqiaError
from cqia.ingest.formats import (
    FileProblem,
    RawItem,
    array_item,
    check_first,
    file_problems,
    parse_jsonl,
    scan_json_array,
)
from cqia.ingest.judge import Outcome, Processor, Source, duplicate_key

WORKERS_ENV = "CQIA_WORKERS"
# Bytes of raw records per chunk (whole lines): an environment setting like CQIA_WORKERS, since the
# outputs do not depend on it; the tests set it small so that a few records make several chunks.
CHUNK_ENV = "CQIA_CHUNK_BYTES"
CHUNK_BYTES = 1 << 20          # ~400 records of ~2.5 KB: ~25 ms of a worker's time against ~0.1 ms to send
DEPTH = 3                      # chunks out per worker: one it works on, two waiting (~50 ms of work)
BATCH = 32                     # outcomes rendered together: still in the CPU's cache, enough to sketch MinHash
PUMP_EVERY = 64                # records the stage takes between two looks at the workers' sockets

Render = Callable[[list[Outcome]], list[Any]]


def worker_count(environ: dict[str, str] | None = None) -> int:
    """Worker processes for the category stage: `CQIA_WORKERS`, or the cores this process may use."""
    value = (os.environ if environ is None else environ).get(WORKERS_ENV, "").strip()
    if not value:
        return len(os.sched_getaffinity(0))
    if not value.isdigit() or int(value) < 1:
        raise CqiaError(f"{WORKERS_ENV} is {value!r}", fix="Use a whole number of worker processes, e.g. 2 "
                        "(1 runs the category stage in one process), or unset it to use every core")
    return int(value)


def chunk_bytes(environ: dict[str, str] | None = None) -> int:
    """Bytes of raw records per chunk sent to a worker or a Ray task: `CQIA_CHUNK_BYTES`, or 1 MiB."""
    value = (os.environ if environ is None else environ).get(CHUNK_ENV, "").strip()
    if not value:
        return CHUNK_BYTES
    if not value.isdigit() or int(value) < 1:
        raise CqiaError(f"{CHUNK_ENV} is {value!r}", fix=f"Use a whole number of bytes, e.g. {CHUNK_BYTES} "
                        "(the default), or unset it")
    return int(value)


@dataclass
class Chunk:
    """Raw records of one file for a worker: whole JSON Lines lines, or JSON array elements."""

    source: Source
    layout: str                                  # the items' layout ('jsonl', 'exam-jsonl', 'array')
    first_line: int                              # JSON Lines: the number of the first line
    data: bytes | list[tuple[int, int, str]]     # lines, or (line, index, text) of elements
    number: int = 1                              # its place among the file's chunks, from 1
    span: str = ""                               # where it is in the file: "bytes A-B" or "elements I-J"

    def item(self, where: int) -> RawItem:
        """The raw item at `where` (a line of a JSON Lines chunk, a position in an array chunk), parsed again."""
        if isinstance(self.data, bytes):
            if not hasattr(self, "_lines"):     # made in the main process, after the chunk was sent
                self._lines = io.BytesIO(self.data).readlines()
            return next(parse_jsonl([self._lines[where - self.first_line]], self.layout, where))
        return array_item(*self.data[where], self.layout)


@dataclass
class Judged:
    """A worker's answer for one chunk."""

    results: list[Any] = field(default_factory=list)        # render's output, one per raw item
    keys: list[bytes] = field(default_factory=list)         # each item's duplicate_key
    places: list[int] = field(default_factory=list)         # each item's line (JSON Lines) or position (array)
    decided: dict[int, str] = field(default_factory=dict)   # position -> id, for items a review decision judged
    records: int = 0                                        # raw records, counted apart from the parser
    first_object: int | None = None                         # position of the first item that is an object
    layout_problem: tuple[int, str, str] | None = None      # that object is plainly in another layout
    problem: tuple[int, str, str] | None = None             # a FileProblem the parser raised after `results`


def judge(processor: Processor, render: Render, chunk: Chunk) -> Judged:
    """A worker's work: parse and judge one chunk as if each record were the first copy of its raw record."""
    out = Judged()
    if isinstance(chunk.data, bytes):
        lines = io.BytesIO(chunk.data).readlines()          # split on b"\n" only, as the file is read
        out.records = sum(1 for line in lines if line.removeprefix(b"\xef\xbb\xbf").strip())
        items: Any = parse_jsonl(lines, chunk.layout, chunk.first_line)
    else:
        out.records = len(chunk.data)
        items = (array_item(line, index, text, chunk.layout) for line, index, text in chunk.data)
    unused = processor.unused_decisions
    outcomes = []
    try:
        for position, item in enumerate(items):
            if out.first_object is None and isinstance(item.raw, dict):
                out.first_object = position
                try:
                    check_first(processor.fmt, item)
                except FileProblem as exc:
                    out.layout_problem = (exc.line, exc.message, exc.fix)
            before = len(unused)
            outcome = processor.one(chunk.source, item, occurrence=0)
            if len(unused) < before:
                out.decided[position] = outcome.id
                unused.add(outcome.id)          # this worker's set stays whole, so a later use is seen too
            outcomes.append(outcome)
            out.keys.append(duplicate_key(item.raw, item.text))
            out.places.append(item.line if isinstance(chunk.data, bytes) else position)
            if len(outcomes) == BATCH:
                out.results += render(outcomes)
                outcomes = []
    except FileProblem as exc:
        out.problem = (exc.line, exc.message, exc.fix)
    out.results += render(outcomes)
    return out


class WorkerFailed(Exception):
    """An exception of a worker that is not a CqiaError (a bug): its traceback, as text."""


# Messages are pickles framed by their length. A chunk and a result are each larger than a socket's
# buffer: a worker blocks to send its result, but the main process never blocks to send or to take
# one (see _Link), so that neither waits for the other.
_LENGTH = struct.Struct("!Q")
SOCKET_BUFFER = 4 << 20        # asked of each socket (the kernel caps it at net.core.wmem_max)


def _read_message(sock: socket.socket) -> Any:
    """The next message on a blocking socket; EOFError if it closed."""
    (size,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size))
    return pickle.loads(_read_exactly(sock, size))


def _read_exactly(sock: socket.socket, size: int) -> memoryview:
    view = memoryview(bytearray(size))
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if not count:
            raise EOFError
        got += count
    return view


def _serve(sock: socket.socket, processor: Processor, render: Render, inherited: list[socket.socket]) -> None:
    """A worker process: judge the chunks the main process sends until it sends None or is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the main process's to handle
    for end in inherited:                           # so that this worker reads EOF when the main process is gone
        end.close()
    try:
        while (chunk := _read_message(sock)) is not None:
            try:
                reply = pickle.dumps(("judged", judge(processor, render, chunk)), pickle.HIGHEST_PROTOCOL)
            except CqiaError as exc:
                reply = pickle.dumps(("error", exc))
            except BaseException as exc:  # noqa: BLE001 - reported in the main process, with this traceback
                reply = pickle.dumps(("error", WorkerFailed("".join(traceback.format_exception(exc)))))
            sock.sendall(_LENGTH.pack(len(reply)))
            sock.sendall(reply)
    except (EOFError, OSError):
        return                                      # the main process is gone


class _Link:
    """The main process's end of one worker's socket, which never blocks.

    What the socket does not take now waits in `outbox`; what the worker sent
    is read as it comes, into whole messages in `inbox`. `Workers._pump` moves
    the bytes whenever the main process waits, and now and then while the
    stage writes, so a worker neither waits for its next chunk nor to send
    its result while the main process is busy with another's.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.outbox: deque[memoryview] = deque()
        self.inbox: deque[memoryview] = deque()
        self._header = memoryview(bytearray(_LENGTH.size))
        self._body: memoryview | None = None
        self._got = 0

    def send(self, data: bytes) -> None:
        self.outbox.extend((memoryview(_LENGTH.pack(len(data))), memoryview(data)))
        self.write()

    def write(self) -> None:
        while self.outbox:
            try:
                sent = self.sock.send(self.outbox[0])
            except BlockingIOError:
                return
            if sent == len(self.outbox[0]):
                self.outbox.popleft()
            else:
                self.outbox[0] = self.outbox[0][sent:]

    def read(self) -> None:
        """Take what the socket holds; EOFError if the worker closed it."""
        while True:
            target = self._header if self._body is None else self._body
            try:
                count = self.sock.recv_into(target[self._got:])
            except BlockingIOError:
                return
            if not count:
                raise EOFError
            self._got += count
            if self._got < len(target):
                continue
            if self._body is None:
                self._body = memoryview(bytearray(_LENGTH.unpack(self._header)[0]))
            else:
                self.inbox.append(self._body)
                self._body = None
            self._got = 0


class Workers:
    """The category stage's worker processes, forked when a file first needs them."""

    def __init__(self, processor: Processor, render: Render, count: int, chunk: int | None = None):
        self.processor = processor
        self.render = render
        self.count = count
        self.chunk = chunk or chunk_bytes()
        self.chunks_sent = 0            # chunks that went to workers (0: every file ran in this process)
        self._procs: list[Any] = []
        self._links: list[_Link] = []

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(kill=exc_type is not None)

    def outcomes(self, source: Source, raw: Any) -> Iterator[Any]:
        """render's output for each raw record of `raw` (the stage's RawItems), in file order."""
        if not self._in_chunks(raw):
            yield from self._sequential(source, raw)
            return
        with file_problems(raw.path):
            yield from self._parallel(source, raw)

    def _in_chunks(self, raw: Any) -> bool:
        """Whether the file is judged by the workers (else in this process)."""
        return self.count > 1 and raw.path.stat().st_size > self.chunk

    def _sequential(self, source: Source, raw: Any) -> Iterator[Any]:
        batch: list[Outcome] = []
        for outcome in self.processor.process(source, raw):
            batch.append(outcome)
            if len(batch) == BATCH:
                yield from self.render(batch)
                batch = []
        yield from self.render(batch)

    def _chunks(self, source: Source, raw: Any) -> Iterator[Chunk]:
        """The file's chunks in order, each with its number and span (for a worker's failure)."""
        number = 0
        if raw.layout == "array":
            elements = list(scan_json_array(raw.path.read_bytes()))
            start = size = 0
            for end, (_, _, text) in enumerate(elements, start=1):
                size += len(text)
                if size >= self.chunk or end == len(elements):
                    number += 1
                    yield Chunk(source, "array", 0, elements[start:end], number, f"elements {start + 1}-{end}")
                    start, size = end, 0
            return
        with open(raw.path, "rb") as handle:
            line, offset = 1, 0
            while data := handle.read(self.chunk):
                if not data.endswith(b"\n"):
                    data += handle.readline()
                number += 1
                yield Chunk(source, raw.fmt.jsonl_layout, line, data, number,
                            f"bytes {offset}-{offset + len(data) - 1}")
                line += data.count(b"\n")
                offset += len(data)

    def _parallel(self, source: Source, raw: Any) -> Iterator[Any]:
        self._start()
        chunks = enumerate(self._chunks(source, raw))
        out: deque[tuple[int, Chunk]] = deque()
        seen_object = [False]

        def send_next() -> None:
            number, chunk = next(chunks, (None, None))
            if chunk is not None:
                worker = number % len(self._links)     # the worker whose oldest chunk was just taken
                self._send(worker, chunk)
                self.chunks_sent += 1
                out.append((worker, chunk))

        try:
            for _ in range(DEPTH * self.count):
                send_next()
            while out:
                worker, chunk = out.popleft()
                judged = self._receive(worker)
                send_next()                             # before the results are written: keep it busy
                yield from self._take(judged, chunk, raw, seen_object)
        finally:
            if out:                 # stopped early (an error): results are still on their way; start afresh
                self.close(kill=True)

    def _take(self, judged: Judged, chunk: Chunk, raw: Any, seen_object: list[bool]) -> Iterator[Any]:
        """The results of one chunk in order, each record's occurrence made right."""
        processor = self.processor
        for position, result in enumerate(judged.results):
            if position % PUMP_EVERY == PUMP_EVERY - 1:
                self._pump(block=False)         # while the stage writes: the workers' next chunks, their results
            if position == judged.first_object and judged.layout_problem and not seen_object[0]:
                raise FileProblem(*judged.layout_problem)
            occurrence = processor.next_occurrence(judged.keys[position])
            if occurrence:              # a later copy of a raw record: its id differs, judge it again here
                result = self.render([processor.one(chunk.source, chunk.item(judged.places[position]),
                                                    occurrence)])[0]
            elif position in judged.decided:
                processor.unused_decisions.discard(judged.decided[position])
            yield result
        seen_object[0] = seen_object[0] or judged.first_object is not None
        raw.records += judged.records
        if judged.problem:
            raise FileProblem(*judged.problem)

    def _start(self) -> None:
        if self._links:
            return
        import multiprocessing

        context = multiprocessing.get_context("fork")
        sys.stdout.flush()          # a child flushes its copy of these buffers when it ends
        sys.stderr.flush()
        for _ in range(self.count):
            mine, theirs = socket.socketpair()
            for end in (mine, theirs):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            inherited = [link.sock for link in self._links] + [mine]
            proc = context.Process(target=_serve, args=(theirs, self.processor, self.render, inherited),
                                   name="cqia-category-worker", daemon=True)
            proc.start()
            theirs.close()          # only the worker holds its end: if it dies, reading from `mine` ends
            mine.setblocking(False)
            self._procs.append(proc)
            self._links.append(_Link(mine))

    def _send(self, worker: int, message: Any) -> None:
        try:
            self._links[worker].send(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
        except OSError:
            raise self._died(worker) from None

    def _pump(self, block: bool) -> None:
        """Send and take what the workers' sockets allow; `block`: wait until one of them allows something."""
        links = {link.sock.fileno(): (worker, link) for worker, link in enumerate(self._links)}
        readable, writable, _ = select.select(list(links), [fd for fd, (_, link) in links.items() if link.outbox],
                                              [], None if block else 0)
        for fd in readable + writable:
            worker, link = links[fd]
            try:
                link.read() if fd in readable else link.write()
            except (EOFError, OSError):
                raise self._died(worker) from None

    def _receive(self, worker: int) -> Judged:
        link = self._links[worker]
        while not link.inbox:
            self._pump(block=True)
        kind, value = pickle.loads(link.inbox.popleft())
        if kind == "judged":
            return value
        if isinstance(value, CqiaError):
            raise value
        raise RuntimeError(f"a worker process of the category stage failed:\n{value}")

    def _died(self, worker: int) -> CqiaError:
        proc = self._procs[worker]
        proc.join(timeout=10)
        code = proc.exitcode
        how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else
               f"ended with exit code {code}" if code is not None else "stopped answering")
        return CqiaError(f"worker process {worker + 1} of {len(self._procs)} (pid {proc.pid}) {how}",
                         where=f"category {self.processor.category.name}",
                         fix="If the machine ran out of memory (`dmesg` names the OOM killer), run the stage "
                             f"with fewer workers ({WORKERS_ENV}=1 runs it in one process); nothing was written")

    def close(self, kill: bool = False) -> None:
        """Stop the workers: ask them to end, or (kill) end them now."""
        for worker, link in enumerate(self._links):
            if not kill:
                try:
                    link.sock.setblocking(True)
                    self._send(worker, None)
                except (OSError, CqiaError):
                    pass
            link.sock.close()
        for proc in self._procs:
            if kill:
                proc.kill()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs, self._links = [], []
