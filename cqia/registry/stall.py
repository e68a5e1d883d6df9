"""The watchdog `cqia release` runs `dvc push` under: a push that stops moving is stopped.

The committed `s3` remote's `read_timeout` bounds a wait for an answer, but not a wait to send:
aiobotocore's HTTP client (aiohttp) has no write timeout, so when an endpoint stops reading in the
middle of an upload (the connection open, its receive window full), `dvc push` waits for ever (TCP's
zero-window probes never give up). The watchdog samples, once a second, the command and every process
under it (Linux /proc) and calls it moving while any of these changes:

- bytes read or written through files: `rchar` and `wchar` of /proc/<pid>/io;
- the send and receive queues of its TCP sockets (/proc/<pid>/net/tcp and tcp6, by socket inode):
  `rchar`/`wchar` do not count send() and recv() on a socket, and s3fs reads a file of up to 100 MiB
  whole before it sends it, so a slow upload that moves does no file I/O for as long as it sends;
- it computes: half a CPU or more (a long stretch of hashing or listing is not a stall);
- a process under it starts or ends.

When nothing of this has changed for `CQIA_PUSH_STALL_SECONDS` seconds (default 120), it stops the
command and its processes (SIGTERM, then SIGKILL 5 s later), and `stream` raises `Stalled`. They keep
the process group they were started in, so Ctrl-C and a kill of cqia's group still reach them.
Where /proc/self/io cannot be read (not Linux), there is no watchdog; docs/releases.md says so.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cqia.common.errors import CqiaError

STALL_ENV = "CQIA_PUSH_STALL_SECONDS"
STALL_SECONDS = 120.0     # twice botocore's default read timeout (60 s): never before a remote's own timeout
BUSY = 0.5                # CPUs used over a sample that count as moving
PROC = Path("/proc")


class Stalled(Exception):
    """The watchdog stopped the command: nothing moved for `seconds`."""

    def __init__(self, seconds: float):
        super().__init__(f"no progress for {seconds:g} s")
        self.seconds = seconds


def stall_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog's limit: `CQIA_PUSH_STALL_SECONDS`, or 120; None (no watchdog) for 0 or without /proc."""
    value = (os.environ if environ is None else environ).get(STALL_ENV, "").strip()
    seconds = STALL_SECONDS
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:     # also NaN
            raise CqiaError(f"{STALL_ENV} is {value!r}", fix=f"Use a number of seconds, e.g. {STALL_SECONDS:g} "
                                                              "(the default; 0 turns the watchdog off), or unset it")
    return seconds if seconds and watchable() else None


def watchable() -> bool:
    """Whether this system shows a process's I/O (/proc/<pid>/io, Linux)."""
    try:
        return bool(read_io((PROC / "self" / "io").read_text()))
    except OSError:
        return False


# --------------------------------------------------------------------------- what /proc says (pure)


def read_io(text: str) -> tuple[int, int]:
    """(rchar, wchar) of a /proc/<pid>/io text."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["rchar"]), int(fields["wchar"])


def read_stat(text: str) -> tuple[str, int, int]:
    """(state, parent pid, CPU clock ticks used: utime + stime) of a /proc/<pid>/stat text."""
    fields = text.rsplit(")", 1)[1].split()   # the command name, in parentheses, may hold spaces
    return fields[0], int(fields[1]), int(fields[11]) + int(fields[12])


def read_tcp(text: str, inodes: set[str]) -> dict[str, tuple[int, int]]:
    """{socket inode: (send queue, receive queue)} of the sockets `inodes` in a /proc/net/tcp (or tcp6) text."""
    queues = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[9] in inodes:
            tx, rx = fields[4].split(":")
            queues[fields[9]] = (int(tx, 16), int(rx, 16))
    return queues


@dataclass(frozen=True)
class Sample:
    """What a command and the processes under it have done so far."""

    io: dict[int, tuple[int, int]] = field(default_factory=dict)          # pid: (rchar, wchar)
    cpu: int = 0                                                           # clock ticks, all of them
    sockets: dict[str, tuple[int, int]] = field(default_factory=dict)     # TCP socket inode: (send q, receive q)


def moved(before: Sample, after: Sample, seconds: float, ticks: int) -> bool:
    """Whether anything moved between two samples `seconds` apart (`ticks`: clock ticks a second)."""
    return (before.io != after.io or before.sockets != after.sockets
            or after.cpu - before.cpu >= BUSY * ticks * seconds)


# --------------------------------------------------------------------------- reading /proc


def tree(pid: int) -> dict[int, int]:
    """{pid: CPU ticks} of `pid` and every process under it that has not ended (zombies have)."""
    parents, cpu = {}, {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                state, parent, ticks = read_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue   # it ended
            if state != "Z":
                parents[int(entry.name)], cpu[int(entry.name)] = parent, ticks
    found, todo = {}, [pid]
    while todo:
        here = todo.pop()
        if here in cpu and here not in found:
            found[here] = cpu[here]
            todo += [child for child, parent in parents.items() if parent == here]
    return found


def sample(pid: int) -> Sample:
    """The Sample of `pid` and the processes under it now (an empty one once it has ended)."""
    io, inodes, cpu = {}, set(), 0
    for each, ticks in tree(pid).items():
        try:
            io[each] = read_io((PROC / str(each) / "io").read_text())
            fds = list((PROC / str(each) / "fd").iterdir())
        except (OSError, ValueError, KeyError):
            continue   # it ended
        cpu += ticks
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue   # closed while we looked
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    sockets = {}
    for table in ("tcp", "tcp6"):
        try:
            sockets.update(read_tcp((PROC / str(pid) / "net" / table).read_text(), inodes))
        except OSError:
            pass
    return Sample(io, cpu, sockets)


# --------------------------------------------------------------------------- the watchdog


class Watchdog(threading.Thread):
    """Stops process `pid` and those under it once nothing has moved for `seconds`; `fired` says it did."""

    def __init__(self, pid: int, seconds: float, interval: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.seconds, self.interval = pid, seconds, interval
        self.fired = False
        self._done = threading.Event()

    def run(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        last, at = sample(self.pid), time.monotonic()
        still_since = at
        while not self._done.wait(self.interval):
            now, current = time.monotonic(), sample(self.pid)
            if moved(last, current, now - at, ticks):
                still_since = now
            last, at = current, now
            if now - still_since >= self.seconds:
                self.fired = True
                self._stop_tree()
                return

    def stop(self) -> None:
        self._done.set()
        self.join()

    def _stop_tree(self) -> None:
        pids: set[int] = set()
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            pids |= set(tree(self.pid))     # those of the first round too: an orphan leaves the tree
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and tree(self.pid):
                time.sleep(0.1)
