"""The Great Expectations server (cqia/gates/gx_server.py): real GX, real processes, offline.

Each test has a server directory of its own (CQIA_GX_SERVER_DIR) and stops its servers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil
import pyarrow as pa
import pytest
from test_gx_gate import CHUNKS, COLUMNS, SUITE

from cqia.common.errors import CqiaError
from cqia.gates import gx_server
from cqia.gates.gx import GateProcess

pytestmark = pytest.mark.process  # real Great Expectations servers and gate processes

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# A gate run in a process of its own, as a stage does it; prints the result.
CLIENT = f"""
import orjson
from cqia.gates.gx import GateProcess

gate = GateProcess({SUITE!r})
for rows in {CHUNKS!r}:
    gate.validate_rows({COLUMNS!r}, rows)
print(orjson.dumps(gate.result()).decode())
"""


@pytest.fixture
def server_dir(monkeypatch):
    base = Path(tempfile.mkdtemp(prefix="cqia-gx-"))  # short: a socket path has at most 107 bytes
    directory = base / "server"
    monkeypatch.setenv("CQIA_GX_SERVER_DIR", str(directory))
    monkeypatch.delenv("CQIA_GX_SERVER", raising=False)
    monkeypatch.delenv("CQIA_GX_SERVER_IDLE", raising=False)
    yield directory
    if directory.exists():
        gx_server.stop(directory)
        for log in directory.glob("*.log"):
            print(f"{log}:\n{log.read_text()}")  # pytest shows it when the test failed
    shutil.rmtree(base, ignore_errors=True)


def gate_run(suite=SUITE, chunks=CHUNKS) -> dict:
    gate = GateProcess(suite)
    for rows in chunks:
        gate.validate_rows(COLUMNS, rows)
    return gate.result()


def running(directory: Path) -> list[dict]:
    return [s for s in gx_server.servers(directory) if s["running"]]


def log_of(directory: Path) -> list[str]:
    return [line for path in sorted(directory.glob("*.log")) for line in path.read_text().splitlines()]


def wait_until(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {timeout} s: {condition}")


def serving_child(server_pid: int) -> psutil.Process:
    """The server's child that serves this process's gate run (it is named after the stage's pid).

    Call it with one gate run open: a child of an earlier one may not have exited yet.
    """
    name = f"cqia-gx:{os.getpid()}"[:15]

    def child():
        children = [c for c in psutil.Process(server_pid).children() if c.name() == name and c.status() != "zombie"]
        return children[0] if len(children) == 1 else None

    return wait_until(child)


def no_gate_runs(server_pid: int) -> None:
    """Wait until the children of earlier gate runs have exited and been reaped."""
    wait_until(lambda: not psutil.Process(server_pid).children())


def client_env(directory: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CQIA_GX_SERVER_DIR": str(directory), **extra}


def test_a_gate_run_in_the_server_gives_the_bytes_of_the_helper_process(server_dir, monkeypatch):
    extra = [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 2}}]

    def run() -> dict:
        gate = GateProcess(SUITE, extra)
        gate.validate_rows(COLUMNS, CHUNKS[0])
        gate.validate_table(pa.table({"id": ["a-3", "a-3", "a-4"], "output_chars": [7, 0, 3]}))
        return gate.result()

    served = run()
    assert len(running(server_dir)) == 1
    monkeypatch.setenv("CQIA_GX_SERVER", "0")
    helped = run()
    assert orjson.dumps(served) == orjson.dumps(helped)
    assert served["rows"] == 5 and not served["success"]
    assert served["expectations"][0]["sample_ids"] == ["a-3", "a-3"]  # GX counts both copies
    assert served["expectations"][2] == {"expectation": "expect_table_row_count_to_equal", "column": None,
                                         "success": False, "unexpected_count": 0, "kwargs": {"value": 2},
                                         "observed": 3}


def test_the_next_gate_run_reuses_the_server_and_skips_the_import(server_dir):
    start = time.perf_counter()
    first = gate_run()
    cold = time.perf_counter() - start
    [server] = running(server_dir)
    start = time.perf_counter()
    second = gate_run()
    warm = time.perf_counter() - start
    assert second == first
    assert [s["pid"] for s in running(server_dir)] == [server["pid"]]
    assert sum("listening on" in line for line in log_of(server_dir)) == 1
    assert warm < 1.0 and warm < cold / 3, f"cold {cold:.2f} s, warm {warm:.2f} s"


def test_cqia_gx_server_status_and_stop(server_dir):
    from click.testing import CliRunner

    from cqia.cli import cli

    gate_run()
    [server] = running(server_dir)
    no_gate_runs(server["pid"])
    status = CliRunner().invoke(cli, ["gx-server", "status", "--json"])
    assert orjson.loads(status.output) == [{"key": gx_server.server_key(), "pid": server["pid"], "running": True,
                                            "gate_runs": 0, "socket": server["socket"], "log": server["log"]}]
    stopped = CliRunner().invoke(cli, ["gx-server", "stop"])
    assert stopped.output == f"stopped pid {server['pid']}\n"
    assert not gx_server._alive(server["pid"]) and not Path(server["socket"]).exists()
    status = CliRunner().invoke(cli, ["gx-server", "status"])
    assert status.output == f"no Great Expectations server in {server_dir}\n"


def test_a_stale_socket_of_a_killed_server_is_replaced(server_dir):
    first = gate_run()
    [old] = running(server_dir)
    os.kill(old["pid"], signal.SIGKILL)
    wait_until(lambda: not gx_server._alive(old["pid"]))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        probe.connect(old["socket"])   # the file is still there, nothing listens
    probe.close()
    assert gate_run() == first
    [new] = running(server_dir)
    assert new["pid"] != old["pid"] and new["socket"] == old["socket"]


def test_a_gate_run_outlives_its_server_being_killed(server_dir):
    expected = gate_run()
    [server] = running(server_dir)
    no_gate_runs(server["pid"])
    gate = GateProcess(SUITE)
    gate.validate_rows(COLUMNS, CHUNKS[0])
    serving_child(server["pid"])              # accepted: the server has forked this gate run's child
    os.kill(server["pid"], signal.SIGKILL)
    wait_until(lambda: not gx_server._alive(server["pid"]))
    gate.validate_rows(COLUMNS, CHUNKS[1])
    assert gate.result() == expected          # its own process finished the run
    assert gate_run() == expected             # and the next one started a new server
    assert [s["pid"] for s in running(server_dir)] != [server["pid"]]


def test_a_gate_process_that_dies_mid_run_is_a_one_line_error(server_dir):
    gate = GateProcess(SUITE)
    gate.validate_rows(COLUMNS, CHUNKS[0])
    [server] = running(server_dir)
    child = serving_child(server["pid"])
    child.kill()
    wait_until(lambda: not gx_server._alive(child.pid))
    with pytest.raises(CqiaError) as err:
        gate.validate_rows(COLUMNS, CHUNKS[1])
        gate.result()
    log = server["log"]
    assert str(err.value) in (
        "the Great Expectations gate process died. Run the stage again; if it repeats, check memory (`dmesg`) "
        f"and the Great Expectations server's log {log}",
        "the Great Expectations gate process ended without a result. Run the stage again; if it repeats, run it "
        f"with the suite in one process to see GX's error and the Great Expectations server's log {log}")
    wait_until(lambda: any(f"(child {child.pid}) was killed by signal 9" in line for line in log_of(server_dir)))
    assert gate_run()["rows"] == 4           # the server serves on


def test_concurrent_gate_runs_start_one_server_and_each_get_a_child(server_dir):
    clients = [subprocess.Popen([sys.executable, "-c", CLIENT], env=client_env(server_dir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [client.communicate(timeout=120) for client in clients]
    assert [client.returncode for client in clients] == [0] * 4, outputs
    assert len({out for out, _ in outputs}) == 1
    assert orjson.loads(outputs[0][0]) == gate_run()
    log = log_of(server_dir)
    assert sum("listening on" in line for line in log) == 1
    runs = dict(line.split("gate run of pid ")[1].split(": child ") for line in log if "gate run of pid" in line)
    stage_pids = {str(client.pid) for client in clients}
    assert stage_pids <= set(runs) and len({runs[pid] for pid in stage_pids}) == 4


def test_cqia_gx_server_0_runs_a_helper_process_per_gate_run(server_dir, monkeypatch):
    monkeypatch.setenv("CQIA_GX_SERVER", "0")
    gate = GateProcess(SUITE)
    assert "from cqia.gates.gx_worker import serve" in " ".join(gate._process.args)
    for rows in CHUNKS:
        gate.validate_rows(COLUMNS, rows)
    assert gate.result()["rows"] == 4
    assert gate._process.returncode == 0
    assert not server_dir.exists()           # no server was looked for
    monkeypatch.setenv("CQIA_GX_SERVER", "yes")
    with pytest.raises(CqiaError) as err:
        GateProcess(SUITE)
    assert str(err.value) == ("CQIA_GX_SERVER is 'yes'. Set it to 1 (the shared Great Expectations server, the "
                              "default) or 0 (a helper process per gate run), or unset it")


def test_the_server_exits_after_its_idle_time(server_dir, monkeypatch):
    monkeypatch.setenv("CQIA_GX_SERVER_IDLE", "1")
    first = gate_run()
    [server] = running(server_dir)
    wait_until(lambda: not gx_server._alive(server["pid"]), timeout=30)
    assert not Path(server["socket"]).exists() and not list(server_dir.glob("*.pid"))
    assert any("no gate run for 1 s: exiting" in line for line in log_of(server_dir))
    assert gate_run() == first
    monkeypatch.setenv("CQIA_GX_SERVER_IDLE", "soon")
    gx_server.stop(server_dir)
    with pytest.raises(CqiaError, match=r"^CQIA_GX_SERVER_IDLE is 'soon'\. Set it to the seconds "):
        gate_run()


def test_the_server_holds_none_of_its_starters_files_or_environment(server_dir):
    # A stage with pipes for stdout and stderr, as under `dvc repro`: it must end while the server lives on.
    proc = subprocess.Popen([sys.executable, "-c", CLIENT], env=client_env(server_dir, CQIA_TEST_MARKER="x"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pipes = {f"pipe:[{os.fstat(stream.fileno()).st_ino}]" for stream in (proc.stdout, proc.stderr)}
    _, err = proc.communicate(timeout=120)    # returns when every holder of the pipes has closed them
    assert proc.returncode == 0, err
    [server] = running(server_dir)
    process = psutil.Process(server["pid"])
    assert process.cwd() == "/" and process.terminal() is None
    assert os.getsid(server["pid"]) != os.getsid(0)
    fds = {int(fd): os.readlink(f"/proc/{server['pid']}/fd/{fd}") for fd in os.listdir(f"/proc/{server['pid']}/fd")}
    assert fds[0] == fds[1] == "/dev/null" and fds[2] == server["log"]
    assert not pipes & set(fds.values())
    assert set(process.environ()) <= {"PYTHONPATH", "GX_ANALYTICS_ENABLED", "LC_CTYPE"}


def test_the_server_key_changes_with_the_code_it_runs(tmp_path):
    shutil.copytree(ROOT / "cqia", tmp_path / "cqia", ignore=shutil.ignore_patterns("__pycache__"))

    def key(*path: Path) -> str:
        env = {"PYTHONPATH": os.pathsep.join(str(p) for p in (tmp_path, *path))}
        code = "from cqia.gates.gx_server import server_key; print(server_key())"
        return subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert key() == gx_server.server_key()    # the same code, interpreter and packages: the same server
    for name in gx_server.SOURCES:
        path = tmp_path / "cqia" / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert key() != gx_server.server_key(), name
        path.write_bytes(original)
    (tmp_path / "cqia" / "ingest" / "rules.py").write_text("# not a module a gate run executes\n")
    assert key() == gx_server.server_key()
    (tmp_path / "elsewhere" / "great_expectations").mkdir(parents=True)
    (tmp_path / "elsewhere" / "great_expectations" / "__init__.py").touch()
    assert key(tmp_path / "elsewhere") != gx_server.server_key()


def test_the_sources_are_every_cqia_module_a_gate_run_executes():
    code = f"""
import importlib, sys
from cqia.gates import gx_server
for name in gx_server.WARM_IMPORTS:
    importlib.import_module(name)
from cqia.gates.gx_worker import SuiteRun
import pandas as pd
run = SuiteRun({SUITE!r})
run.validate(pd.DataFrame.from_records({CHUNKS[0]!r}, columns={list(COLUMNS)!r}))
run.result()
print(" ".join(sorted(m for m in sys.modules if m == "cqia" or m.startswith("cqia."))))
"""
    proc = subprocess.run([sys.executable, "-P", "-c", code], env={"PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, check=True)
    packages = {"cqia", "cqia.common", "cqia.gates"}
    files = {m.removeprefix("cqia").lstrip(".").replace(".", "/") + ("/__init__.py" if m in packages else ".py")
             for m in proc.stdout.split()}
    files = {f.lstrip("/") for f in files}
    assert files == set(gx_server.SOURCES)


def test_a_socket_path_too_long_for_unix_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CQIA_GX_SERVER_DIR", str(tmp_path / ("d" * 100)))
    with pytest.raises(CqiaError, match=r"socket path is longer than a Unix socket allows \(107 bytes\)\. "
                                        r"Set CQIA_GX_SERVER_DIR to a shorter directory$"):
        GateProcess(SUITE)


def test_a_server_directory_others_can_enter_is_refused(monkeypatch, tmp_path):
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    monkeypatch.setenv("CQIA_GX_SERVER_DIR", str(directory))
    with pytest.raises(CqiaError) as err:
        GateProcess(SUITE)
    assert str(err.value) == (f"{directory}: the Great Expectations server's directory is not private to you "
                              f"(owner uid {os.getuid()}, mode drwxr-xr-x). If it is yours, `chmod 700 {directory}`; "
                              "else set CQIA_GX_SERVER_DIR to another directory")


@pytest.mark.e2e
def test_dvc_repro_does_not_wait_for_the_server_its_stage_started(repo, server_dir):
    env = {**repo.env, "CQIA_GX_SERVER_DIR": str(server_dir)}
    proc = subprocess.run([str(BIN / "dvc"), "repro", "category@100poison"], cwd=repo.path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert repo.file("data/stages/100poison/metrics.json").is_file()
    [server] = running(server_dir)            # it outlived the stage, and DVC did not wait for it
    assert any("gate run of pid" in line for line in log_of(server_dir))
