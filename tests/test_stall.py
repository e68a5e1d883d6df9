"""The watchdog `cqia release` runs `dvc push` under (cqia/registry/stall.py): what it reads in /proc, what it
calls moving, and its knob. The real stall, mid-upload through a TCP proxy, and a slow push it must not stop,
are in tests/test_release_e2e.py."""

from __future__ import annotations

import os
import socket

import pytest

from cqia.common.errors import CqiaError
from cqia.registry import stall
from cqia.registry.stall import Sample, moved, read_io, read_stat, read_tcp, sample, stall_seconds

pytestmark = pytest.mark.unit
linux = pytest.mark.skipif(not stall.watchable(), reason="no /proc/<pid>/io here: cqia release has no watchdog")

IO = "rchar: 61458149\nwchar: 714170\nsyscr: 2463\nsyscw: 400\nread_bytes: 0\nwrite_bytes: 4096\n"
STAT = "2477 (dvc push (x)) S 2470 2477 2470 0 -1 4194560 9 0 0 0 101 27 0 0 20 0 5 0 1 2 3"
TCP = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0100007F:A3C2 0100007F:B00B 01 003CBAC0:00000000 04:000001F4 00000000     0        0 732540 1 0\n"
    "   1: 0100007F:A3C4 0100007F:B00B 01 00000000:00000010 00:00000000 00000000     0        0 732544 1 0\n"
    "   2: 0100007F:A3C6 0100007F:B00B 01 00000000:00000000 00:00000000 00000000     0        0 999999 1 0\n"
)


def test_read_io_stat_and_tcp():
    assert read_io(IO) == (61458149, 714170)
    assert read_stat(STAT) == ("S", 2470, 128)      # a command name with spaces and parentheses
    assert read_tcp(TCP, {"732540", "732544"}) == {"732540": (0x3CBAC0, 0), "732544": (0, 16)}


def test_moving_is_file_io_a_socket_queue_a_process_or_half_a_cpu():
    still = Sample({1: (10, 20)}, cpu=100, sockets={"7": (4_000_000, 0)})
    assert not moved(still, Sample({1: (10, 20)}, cpu=101, sockets={"7": (4_000_000, 0)}), 1.0, 100)
    assert moved(still, Sample({1: (10, 21)}, cpu=100, sockets={"7": (4_000_000, 0)}), 1.0, 100)   # wrote
    assert moved(still, Sample({1: (10, 20)}, cpu=100, sockets={"7": (3_900_000, 0)}), 1.0, 100)   # sent
    assert moved(still, Sample({1: (10, 20)}, cpu=100, sockets={}), 1.0, 100)                       # closed
    assert moved(still, Sample({1: (10, 20), 2: (0, 0)}, cpu=100, sockets=still.sockets), 1.0, 100)
    assert moved(still, Sample({1: (10, 20)}, cpu=150, sockets=still.sockets), 1.0, 100)          # computes


@linux
def test_a_sample_of_this_process_sees_its_sockets_queues():
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        peer, _ = server.accept()
        with peer:
            client.sendall(b"x" * 1000)            # not read by the peer: it waits in its receive queue
            now = sample(os.getpid())
            inode = str(os.fstat(peer.fileno()).st_ino)
            assert now.sockets[inode] == (0, 1000)
            assert now.io[os.getpid()][0] > 0
            peer.recv(1000)
            assert sample(os.getpid()).sockets[inode] == (0, 0)


@linux
def test_the_limit_is_a_documented_knob():
    assert stall_seconds({}) == stall.STALL_SECONDS == 120
    assert stall_seconds({"CQIA_PUSH_STALL_SECONDS": "3"}) == 3.0
    assert stall_seconds({"CQIA_PUSH_STALL_SECONDS": "0"}) is None            # no watchdog
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(CqiaError) as error:
            stall_seconds({"CQIA_PUSH_STALL_SECONDS": bad})
        assert str(error.value) == (f"CQIA_PUSH_STALL_SECONDS is {bad!r}. Use a number of seconds, e.g. 120 (the "
                                    "default; 0 turns the watchdog off), or unset it")
