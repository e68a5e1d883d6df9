"""The Great Expectations server: imports GX once, then forks one child per gate run.

Importing great_expectations takes about 2 s, and every gated stage of a `dvc repro`
(27 with 12 source categories) paid it in a helper process of its own. Now the first gate
run starts this server, and every gate run after it (the next stages, a concurrent
`dvc repro`, the pytest-xdist workers) connects to it:

    stage (GateProcess) --connect--> server (GX imported once) --fork--> child: gx_worker.serve(connection)

The child serves the connection exactly as the per-stage helper does (`cqia.gates.gx_worker.serve`:
the suite, then the chunks, then the result) and exits: each gate run is a process of its
own, forked from the same server, and nothing passes from one gate run to the next.

Where: the socket `gx-<key>.sock` in a private directory (mode 0700), `<tmp>/cqia-gx-<uid>/`
or `$CQIA_GX_SERVER_DIR`, with the server's `.log` (its stderr), `.pid` and `.lock` (the
clients that find no server start exactly one). The key hashes what the server's behaviour
depends on: the interpreter, the cqia modules a gate run executes (SOURCES) and the packages
installed where great_expectations is; code that changed never uses a server its old
version started.

The server is detached (its own session, stdin and stdout closed, cwd /, an environment of
its own), so it holds none of a stage's files: DVC, which waits for a stage's output to
close, never waits for it. It exits when no gate run has come for `CQIA_GX_SERVER_IDLE`
seconds (default 120) or on SIGTERM (`cqia gx-server stop`), and removes its socket; a gate
run going on then finishes in its own process. `CQIA_GX_SERVER=0` runs each gate in a
helper process of its own instead.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cqia.common.errors import CqiaError

IDLE_DEFAULT_S = 120.0
# The cqia modules a gate run executes: this one, cqia.gates.gx_worker and what they import
# (tests/test_gx_server.py checks the list against a real server's sys.modules).
SOURCES = ("__init__.py", "common/__init__.py", "common/errors.py", "gates/__init__.py", "gates/gx_server.py", "gates/gx_worker.py")  # under cqia/
# What a gate run needs besides cqia: imported once by the server, not by each child.
WARM_IMPORTS = ("great_expectations", "great_expectations.expectations.expectation_configuration",
                "great_expectations.data_context.types.base", "pandas", "pyarrow", "pyarrow.ipc",
                "multiprocessing.connection", "cqia.gates.gx_worker")
SOCKET_PATH_MAX = 107        # sun_path is 108 bytes with the final NUL
BACKLOG = 64
START_TIMEOUT_S = 60.0
POLL_S = 0.5                 # how often the server reaps its children and checks for idle / SIGTERM
SERVE = "from cqia.gates.gx_server import serve; serve()"
NO_SERVER_FIX = "CQIA_GX_SERVER=0 runs each gate in a helper process of its own"


def enabled() -> bool:
    """False when `CQIA_GX_SERVER=0` (or the platform has no fork or Unix sockets)."""
    value = os.environ.get("CQIA_GX_SERVER", "").strip()
    if value not in ("", "0", "1"):
        raise CqiaError(f"CQIA_GX_SERVER is {value!r}",
                        fix="Set it to 1 (the shared Great Expectations server, the default) or 0 "
                            "(a helper process per gate run), or unset it")
    return value != "0" and hasattr(os, "fork") and hasattr(socket, "AF_UNIX")


def idle_seconds() -> float:
    value = os.environ.get("CQIA_GX_SERVER_IDLE", "").strip()
    if not value:
        return IDLE_DEFAULT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise CqiaError(f"CQIA_GX_SERVER_IDLE is {value!r}",
                        fix="Set it to the seconds the Great Expectations server waits for a gate run "
                            f"before it exits (default {IDLE_DEFAULT_S:g}), or unset it")
    return seconds


def server_key() -> str:
    """A hash of what a server's results depend on, without importing great_expectations."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode() + data)

    add("python", f"{sys.executable}\n{sys.version}".encode())
    here = Path(__file__).resolve().parent.parent
    for name in SOURCES:
        add(name, (here / name).read_bytes())
    spec = importlib.util.find_spec("great_expectations")
    if spec is None or not spec.origin:
        add("great_expectations", b"not installed")
    else:
        # Its location, and every distribution installed beside it with its version (the
        # dist-info names): GX's own version and those of pandas, numpy, scipy, pyarrow.
        location = Path(spec.origin).resolve().parent
        installed = sorted(n for n in os.listdir(location.parent) if n.endswith((".dist-info", ".egg-info")))
        add("great_expectations", "\n".join([str(location), *installed]).encode())
    return digest.hexdigest()[:16]


def server_dir() -> Path:
    """`$CQIA_GX_SERVER_DIR`, or `<tmp>/cqia-gx-<uid>`: created if missing, and it must be private."""
    import stat
    import tempfile

    configured = os.environ.get("CQIA_GX_SERVER_DIR", "")
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / f"cqia-gx-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise CqiaError(f"cannot create the Great Expectations server's directory ({exc.strerror})",
                        where=str(path), fix=f"Set CQIA_GX_SERVER_DIR to a directory of yours, or {NO_SERVER_FIX}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise CqiaError(f"the Great Expectations server's directory is not private to you (owner uid "
                        f"{info.st_uid}, mode {stat.filemode(info.st_mode)})", where=str(path),
                        fix=f"If it is yours, `chmod 700 {path}`; else set CQIA_GX_SERVER_DIR to another directory")
    return path


@dataclass(frozen=True)
class ServerFiles:
    """The files of the server for one key: its socket, lock and log (and `.pid` beside them)."""

    dir: Path
    key: str

    @classmethod
    def for_this_code(cls) -> "ServerFiles":
        files = cls(server_dir(), server_key())
        if len(os.fsencode(files.socket)) > SOCKET_PATH_MAX:
            raise CqiaError(f"the Great Expectations server's socket path is longer than a Unix socket allows "
                            f"({SOCKET_PATH_MAX} bytes)", where=str(files.socket),
                            fix="Set CQIA_GX_SERVER_DIR to a shorter directory")
        return files

    def _file(self, suffix: str) -> Path:
        return self.dir / f"gx-{self.key}{suffix}"

    @property
    def socket(self) -> Path:
        return self._file(".sock")

    @property
    def lock(self) -> Path:
        return self._file(".lock")

    @property
    def log(self) -> Path:
        return self._file(".log")


# --- the client -------------------------------------------------------------------


def connect():
    """A connection (multiprocessing.connection.Connection) to a child of this code's server, and
    the server's log file; starts the server if none is listening."""
    from multiprocessing.connection import Connection

    files = ServerFiles.for_this_code()
    sock = _try_connect(files.socket) or _start(files)
    return Connection(sock.detach()), files.log


def _try_connect(path: Path) -> socket.socket | None:
    """A socket connected to the server at path; None if there is no server (no file, or a stale one)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise CqiaError(f"cannot connect to the Great Expectations server ({exc.strerror})", where=str(path),
                        fix=f"Stop it (`cqia gx-server stop`) and run the stage again; {NO_SERVER_FIX}") from None


def _start(files: ServerFiles) -> socket.socket:
    """Start the server (one client at a time, under the lock) and connect to it."""
    import fcntl
    import subprocess

    idle = idle_seconds()
    lock = os.open(files.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _try_connect(files.socket)      # another client started it while this one waited
        if sock is not None:
            return sock
        try:
            files.socket.unlink()               # stale: its server was killed (SIGKILL) and left it
        except FileNotFoundError:
            pass
        root = Path(__file__).resolve().parent.parent
        # The environment is the server's own, not the caller's: nothing a gate result depends on
        # comes from whoever happened to start it. PYTHONPATH: this cqia, not an installed one.
        env = {"PYTHONPATH": str(root), "GX_ANALYTICS_ENABLED": "False"}
        with open(files.log, "wb") as log:
            starter = subprocess.Popen([sys.executable, "-P", "-c", SERVE, str(files.socket), repr(idle), files.key],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                       cwd="/", env=env, start_new_session=True)
        try:
            code = starter.wait(timeout=START_TIMEOUT_S)  # it returns once the socket listens
        except subprocess.TimeoutExpired:
            starter.kill()
            starter.wait()
            code = None
        sock = _try_connect(files.socket) if code == 0 else None
        if sock is None:
            raise CqiaError("the Great Expectations server failed to start", where=str(files.log),
                            fix=f"Read its log; {NO_SERVER_FIX}")
        return sock
    finally:
        os.close(lock)


# --- the server ---------------------------------------------------------------------


def serve() -> None:
    """The server's entry: `python -P -c SERVE <socket> <idle seconds> <key>` (see `_start`)."""
    path, idle, key = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    own = server_key()
    if own != key:
        sys.exit(f"error: this server's code has key {own}, its starter's {key} (a file changed while it "
                 f"started, or great_expectations is not where the starter found it); run the stage again")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(BACKLOG)
    except OSError as exc:
        sys.exit(f"error: cannot listen on {path} ({exc.strerror})")
    inode = os.stat(path).st_ino
    pid = os.fork()
    if pid:
        # The server goes on in the child. Its pid file is written before the starter's wait()
        # returns, so whoever connects can find it.
        pid_file = path.with_suffix(".pid")
        pid_file.with_suffix(".pid.tmp").write_text(f"{pid}\n")
        os.replace(pid_file.with_suffix(".pid.tmp"), pid_file)
        os._exit(0)
    _Server(listener, path, inode, idle).run()
    sys.stderr.flush()
    os._exit(0)  # tearing down GX's modules takes most of a second and does nothing the server needs


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}", file=sys.stderr, flush=True)


def _set_name(name: str) -> None:
    """The process's name as `ps` and psutil show it (Linux; at most 15 characters)."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def _peer_pid(conn: socket.socket) -> int:
    """The pid of the process that connected (the stage), where the platform says it."""
    import struct

    if not hasattr(socket, "SO_PEERCRED"):
        return 0
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]


class _Server:
    def __init__(self, listener: socket.socket, path: Path, inode: int, idle: float):
        self.listener = listener
        self.path = path
        self.inode = inode
        self.idle = idle
        self.children: dict[int, int] = {}      # child pid -> pid of the stage it serves
        self.stopping = False

    def run(self) -> None:
        import signal

        _set_name("cqia-gx-server")
        wake, self._wakeup = self._wake = os.pipe()     # a signal wakes the select below at once
        os.set_blocking(self._wakeup, False)
        signal.set_wakeup_fd(self._wakeup)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        pid_file = self.path.with_suffix(".pid")
        _log(f"listening on {self.path}; exits after {self.idle:g} s without a gate run")
        self._warm_up()
        self.listener.setblocking(False)
        last = time.monotonic()
        import select

        while not self.stopping:
            if self._reap():
                last = time.monotonic()
            if not self.children and time.monotonic() - last >= self.idle:
                _log(f"no gate run for {self.idle:g} s: exiting")
                break
            ready, _, _ = select.select([self.listener, wake], [], [], POLL_S)
            if wake in ready:
                os.read(wake, 512)
            if self.listener in ready and self._accept():
                last = time.monotonic()
        self._shutdown(pid_file)

    def _stop(self, signum, frame) -> None:
        if not self.stopping:
            _log(f"signal {signum}: exiting")
        self.stopping = True

    def _warm_up(self) -> None:
        import importlib
        import traceback

        start = time.monotonic()
        try:
            for name in WARM_IMPORTS:
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 - each child then meets the error and sends it to its stage
            _log("importing great_expectations failed; each gate run will report it:\n" + traceback.format_exc())
            return
        _log(f"imported great_expectations in {time.monotonic() - start:.2f} s")

    def _accept(self) -> bool:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        try:
            client = _peer_pid(conn)
            pid = os.fork()
        except OSError as exc:  # no memory or process left for a child: that gate run fails, the server goes on
            _log(f"cannot fork a child for a gate run: {exc}")
            conn.close()
            return True
        if pid == 0:
            self._child(conn, client)
        conn.close()
        self.children[pid] = client
        _log(f"gate run of pid {client}: child {pid}")
        return True

    def _child(self, conn: socket.socket, client: int) -> None:
        """A forked child: serve one gate run on conn, then exit (never returns)."""
        import signal
        import traceback

        code = 0
        try:
            self.listener.close()
            signal.set_wakeup_fd(-1)
            for fd in self._wake:
                os.close(fd)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _set_name(f"cqia-gx:{client}")
            conn.setblocking(True)
            from cqia.gates.gx_worker import serve

            serve(conn.detach())
        except BaseException:  # noqa: BLE001 - serve reports GX's errors to the stage; this is the rest
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)

    def _reap(self) -> bool:
        """Wait for the children that ended; True if any did."""
        ended = False
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            client = self.children.pop(pid, 0)
            ended = True
            if os.WIFSIGNALED(status):
                _log(f"the gate run of pid {client} (child {pid}) was killed by signal {os.WTERMSIG(status)}")
            elif os.waitstatus_to_exitcode(status):
                _log(f"the gate run of pid {client} (child {pid}) exited {os.waitstatus_to_exitcode(status)}")
        return ended

    def _shutdown(self, pid_file: Path) -> None:
        # Once the socket file is gone no new client reaches this server (the next one starts
        # another); a client that connected just before is still served. Gate runs still going
        # (there are some only on SIGTERM) finish in their own processes: a child needs nothing
        # of the server, and one whose stage holds its connection open may wait a long time.
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        time.sleep(0.05)    # a connect() that found the file before it went has completed by now
        while self._accept():
            pass
        self.listener.close()
        self._reap()
        if self.children:
            _log(f"{len(self.children)} gate run(s) going on finish on their own: pids {sorted(self.children)}")
        try:
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except OSError:
            pass


# --- status and stop (cqia gx-server) -------------------------------------------------


def _alive(pid: int) -> bool:
    """True if any thread of pid runs. A zombie does not; nor does a process whose threads are all
    exiting, but until the last one has, its files (a listening socket) are still open."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            continue
    return False


def _is_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"cqia.gates.gx_server" in cmdline.read()
    except FileNotFoundError:
        return False
    except OSError:
        return _alive(pid)  # no /proc: trust the pid file


def servers(directory: Path | None = None) -> list[dict]:
    """The servers whose pid files are in the directory: key, pid, socket, log, running, gate runs now."""
    directory = directory or server_dir()
    found = []
    for pid_file in sorted(directory.glob("gx-*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        running = _alive(pid) and _is_server(pid)
        children = 0
        if running:
            try:
                children = sum(1 for task in Path(f"/proc/{pid}/task").iterdir()
                               for child in (task / "children").read_text().split() if _alive(int(child)))
            except OSError:
                pass
        key = pid_file.stem.removeprefix("gx-")
        found.append({"key": key, "pid": pid, "running": running, "gate_runs": children,
                      "socket": str(pid_file.with_suffix(".sock")), "log": str(pid_file.with_suffix(".log"))})
    return found


def stop(directory: Path | None = None, timeout: float = 30.0) -> list[int]:
    """Stop the servers in the directory (SIGTERM); their pids. A gate run going on finishes in its own process.

    A server still running after `timeout` seconds is killed, and its socket removed.
    """
    import signal

    stopped = []
    for server in servers(directory):
        pid_file = Path(server["socket"]).with_suffix(".pid")
        if not server["running"]:
            pid_file.unlink(missing_ok=True)
            continue
        try:
            os.kill(server["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _alive(server["pid"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(server["pid"]):
            os.kill(server["pid"], signal.SIGKILL)
            Path(server["socket"]).unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
        stopped.append(server["pid"])
    return stopped
