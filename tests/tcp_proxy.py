"""A real TCP proxy on 127.0.0.1 for fault tests: forward, cut, refuse or stall.

It sits between a client (`dvc` with dvc-s3) and a server (moto's) and has four
modes, switched from the test:

- forward: bytes are copied both ways, and counted (`up`: client to server,
  `down`: server to client);
- cut: every open connection is closed at once (a reset, mid-stream), and the
  proxy then resets every new one as soon as it is accepted (the listener stays open,
  so no connection can wait unanswered in its queue); `cut_after(n, "up")` does it from inside the
  pump thread the moment `n` more bytes have gone that way, so a transfer is
  cut while it is in progress with no sleep as the synchronisation;
- refuse: the listening socket is closed, so connecting fails with
  ECONNREFUSED (the port is kept and bound again by `restore()`);
- stall: connections are accepted and never answered (no byte is read from
  or sent to them), as a hung load balancer does; `cut_after(n, "up", then="stall")`
  stalls every connection, open or new, the moment `n` more bytes have gone up: an
  endpoint that stops reading in the middle of an upload (its receive window fills);
- throttle: forward, but no faster than a set rate in one direction (a slow link that
  still moves).

`restore()` goes back to forwarding, at full speed, on the same port.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "forward"
        self.forwarded = {"up": 0, "down": 0}
        self.connections = 0                   # accepted since start
        self.was_cut = threading.Event()       # set when a cut_after() fired
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._cut_at: tuple[str, int, str] | None = None
        self._rate: dict[str, float] = {}      # direction: bytes a second, while throttled
        self._unstalled = threading.Event()
        self._unstalled.set()

    # ------------------------------------------------------------------ control

    def start(self) -> "TcpProxy":
        self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self.mode = "refuse"
            self._close_listener()
            self._reset_all()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, nbytes: int, direction: str, then: str = "cut") -> None:
        """Once `nbytes` more bytes have been forwarded in `direction`: cut every connection
        (`then="cut"`), or stop forwarding on every connection, new or open (`then="stall"`)."""
        assert direction in self.forwarded and then in ("cut", "stall")
        with self._lock:
            self._cut_at = (direction, self.forwarded[direction] + nbytes, then)
            self.was_cut.clear()

    def cut(self) -> None:
        """Close every connection now (a reset) and refuse new ones until restore()."""
        with self._lock:
            self._cut_locked()

    def refuse(self) -> None:
        with self._lock:
            self.mode = "refuse"
            self._close_listener()

    def stall(self) -> None:
        """Accept new connections and never answer them; open ones are reset."""
        with self._lock:
            self.mode = "stall"
            self._unstalled.clear()
            self._reset_all()
        if self._listener is None:
            self._listen()

    def throttle(self, bytes_per_second: float, direction: str = "up") -> None:
        """Forward no faster than `bytes_per_second` in `direction`, on each connection."""
        assert direction in self.forwarded
        with self._lock:
            self._rate[direction] = bytes_per_second

    def restore(self) -> None:
        with self._lock:
            self.mode = "forward"
            self._cut_at = None
            self._rate.clear()
            self._reset_all()  # stalled connections go too
        if self._listener is None:
            self._listen()

    # ------------------------------------------------------------------ inside

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            self._listener.close()
            self._listener = None

    def _cut_locked(self) -> None:
        self.mode = "cut"
        self._cut_at = None
        self._reset_all()
        self.was_cut.set()

    def _reset_all(self) -> None:
        if self.mode != "stall":
            self._unstalled.set()
        for sock in list(self._open):
            _reset(sock)
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._listener is not listener:
                    _reset(client)
                    return
                mode = self.mode
                if mode == "cut":
                    _reset(client)
                    continue
                self.connections += 1
                self._open.add(client)
            if mode == "stall":
                continue  # held open in self._open, never read
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                with self._lock:
                    self._open.discard(client)
                _reset(client)
                continue
            with self._lock:
                self._open.add(upstream)
            pair = {"client": client, "upstream": upstream, "running": 2}
            threading.Thread(target=self._pump, args=(client, upstream, "up", pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down", pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str, pair: dict) -> None:
        self._copy(src, dst, direction)
        with self._lock:
            pair["running"] -= 1
            if pair["running"]:
                return
            for sock in (pair["client"], pair["upstream"]):
                if sock in self._open:
                    self._open.discard(sock)
                    sock.close()

    def _copy(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if self.mode == "forward":
                        data, fault = self._count(direction, data)
                    else:
                        data, fault = b"", self.mode
                    rate = self._rate.get(direction)
                if data and not _send(dst, data):
                    break
                if rate:
                    time.sleep(len(data) / rate)
                if fault == "stall":
                    self._unstalled.wait()  # read and send nothing more; restore() or cut() resets this pair
                    return
                if fault:
                    return
        except OSError:
            pass
        # one side finished: pass the half-close on, as a plain TCP relay does
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _count(self, direction: str, data: bytes) -> tuple[bytes, str | None]:
        """Count `data` (under the lock); what of it to forward, and the fault it triggers, if any."""
        cut = self._cut_at
        if cut is None or cut[0] != direction or self.forwarded[direction] + len(data) < cut[1]:
            self.forwarded[direction] += len(data)
            return data, None
        data = data[:cut[1] - self.forwarded[direction]]  # forward up to the byte, then the fault
        self.forwarded[direction] += len(data)
        if cut[2] == "stall":
            self.mode = "stall"
            self._cut_at = None
            self._unstalled.clear()
            self.was_cut.set()
            return data, "stall"
        self._cut_locked()
        return data, "cut"


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a reset, as when a link or a middlebox drops the connection.

    shutdown(SHUT_RD) first: a pump thread may be blocked in recv() on this socket, and on Linux
    close() alone neither wakes it nor releases the socket (the blocked call holds it), so the
    peer would wait for an answer forever on a connection no one owns. SHUT_RD wakes the recv
    without sending a FIN; when the last reference goes, the zero linger sends the reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
