"""Throw-away environments for the tests and the benchmarks: the real `dvc` and `git`, a Ray head.

`isolated_env`: no analytics, and DVC's site cache, DVC's and git's global and
system configuration kept inside `tmp`, so that nothing reads or writes the
user's own configuration. `ray_head`: a one-node Ray cluster of its own on
127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


def isolated_env(tmp: Path, who: str, **extra: str) -> dict[str, str]:
    """os.environ plus the isolation settings, a git identity `cqia <who>`, this venv first on PATH, and `extra`."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ)
    env.update(
        DVC_NO_ANALYTICS="1",
        GX_ANALYTICS_ENABLED="False",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
        DVC_GLOBAL_CONFIG_DIR=str(tmp / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp / "dvc-system"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(tmp / "gitconfig"),
        GIT_AUTHOR_NAME=f"cqia {who}", GIT_AUTHOR_EMAIL=f"{who}@example.invalid",
        GIT_COMMITTER_NAME=f"cqia {who}", GIT_COMMITTER_EMAIL=f"{who}@example.invalid",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


# A Ray cluster of one node on this machine, for the tests and the benchmark of the category stage on Ray
# (cqia/ingest/ray_executor.py). Ray reads these in the driver and in every process `ray start` starts: no
# usage reports, and a cluster that stays on the loopback address (Ray otherwise replaces 127.0.0.1 by the
# machine's routable address).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclass
class RayHead:
    address: str            # RAY_ADDRESS for drivers: 127.0.0.1:<port>
    seconds: float          # from `ray start` to "Ray runtime started"
    temp: Path              # its sessions, sockets and logs
    session: int            # the session id of every process it started (Ray's workers have process groups of their own)


@contextmanager
def ray_head(cpus: int = 2, object_store_bytes: int = 200_000_000, timeout: float = 180) -> Iterator[RayHead]:
    """`ray start --head --block` on 127.0.0.1 with `cpus` CPUs and no dashboard, in a temporary directory.

    Stopped at the end by ending that `ray start` process (it stops what it started), then anything left in
    its session: `ray stop` would stop every Ray cluster of the machine, other users' too.
    """
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile
    import time

    temp = Path(tempfile.mkdtemp(prefix="cqia-ray-"))     # short: Ray's socket paths live under it
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = temp / "ray-start.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                                 f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
                                 f"--object-store-memory={object_store_bytes}"],
                                env={**os.environ, **RAY_ENV}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"the Ray head did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield RayHead(f"127.0.0.1:{port}", time.monotonic() - started, temp, head.pid)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            pass
        for pid in session_members(head.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def session_members(session: int) -> list[int]:
    """The processes of a session (Linux /proc), but not the caller."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if os.getsid(int(entry.name)) == session:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members
