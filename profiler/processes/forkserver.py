"""Measuring processes forked from a server that has imported JAX and Flax but started nothing.

A fresh interpreter per measurement spends seconds importing JAX, Flax and the harness,
often more than a small point's whole compile. A fork server pays that once: it imports
what a measurement needs, checks that no JAX backend exists, and forks one child per
measurement. Each child starts its own backend, so its compilation caches are as empty
as a brand-new interpreter's (docs/scale.md has the measurements that show it compiles
as fast as one, and no faster).

JAX and XLA read their environment (XLA_FLAGS, such as a CPU device count, and JAX_*)
when they are imported or when the backend starts, so a server serves one environment:
`ServerPool` starts one server per distinct environment of the measuring processes.

Protocol, one Unix-socket connection per measurement: the runner sends one JSON line
{"point", "result", "stderr"}; the server forks the child and answers {"pid"}; when the
child ends it answers {"status"} (the wait status) and closes. The runner may send "kill"
meanwhile. The server ends, killing its children, when its stdin closes: the runner
holds the other end, so the server never outlives it however the runner ends.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PRELOAD = ("jax", "flax.linen", "profiler.measurement.env", "profiler.measurement.measure", "profiler.processes.worker", "profiler.workloads")
"""Imported by the server before it forks; every module of profiler.workloads follows."""


class ForkServerError(RuntimeError):
    """A fork server could not start, or died while a child of it was measuring.

    `status` is the run_status of the measurement it cost: 'error' if none was started,
    'crash' if the measuring process died with its server."""

    def __init__(self, message: str, status: str = "error") -> None:
        super().__init__(message)
        self.status = status


# --- the server ------------------------------------------------------------------------


def preload() -> None:
    """Import what a measurement needs, and make sure that started no JAX backend: a
    child must start its own, with empty caches, as a fresh interpreter does."""
    from profiler import targets

    targets.hide_cuda_plugin()  # before JAX is imported; not in a GPU target's server
    for name in _PRELOAD:
        importlib.import_module(name)
    workloads = sys.modules["profiler.workloads"]
    for module in pkgutil.iter_modules(workloads.__path__):
        importlib.import_module(f"profiler.workloads.{module.name}")
    # Facts about the host and the checkout, read once for every child (they run git and
    # uname): a sweep's rows say which commit it measured when its server started.
    sys.modules["profiler.measurement.env"].host()
    from profiler.measurement.compat import backends_are_initialized

    if backends_are_initialized():
        raise ForkServerError("importing the measuring modules started a JAX backend; "
                              "a forked child would inherit it (use --start fresh)")


@dataclass
class _Child:
    pid: int
    pidfd: int
    conn: socket.socket | None
    """The runner's connection; None once the runner hung up."""


def serve(path: str) -> None:
    """Listen on the Unix socket `path` and fork one measuring child per request."""
    # Ctrl-C reaches the whole process group; the runner decides when the server ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload()
    # What the imports made lives as long as the children: out of every collection, so a
    # child's collections (before each timed stage) visit only its own objects, and do not
    # write to (copy) every page it shares with the server (gc.freeze's purpose).
    gc.collect()
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    lifeline = sys.stdin.fileno()
    selector.register(lifeline, selectors.EVENT_READ, ("lifeline", None))
    selector.register(listener, selectors.EVENT_READ, ("listener", None))
    children: dict[int, _Child] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in selector.select():
            kind, item = key.data
            if kind == "lifeline" and not os.read(lifeline, 4096):
                for child in children.values():
                    os.kill(child.pid, signal.SIGKILL)
                # At once: finalising an interpreter that imported JAX takes a second, and
                # the sweep waits for its server to end. Nothing is left to flush.
                os._exit(0)
            if kind == "listener":
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ, ("request", conn))
            elif kind == "request":
                _start_child(item, listener, selector, children)
            elif kind == "control" and item.pid in children:  # "kill", or the runner hung up
                if not item.conn.recv(64):
                    selector.unregister(item.conn)
                    item.conn.close()
                    item.conn = None
                os.kill(item.pid, signal.SIGKILL)  # still ours: it is reaped only below
            elif kind == "exit":
                _, status = os.waitpid(item.pid, 0)
                selector.unregister(item.pidfd)
                os.close(item.pidfd)
                del children[item.pid]
                if item.conn is not None:
                    selector.unregister(item.conn)
                    _send(item.conn, {"status": status})
                    item.conn.close()


def _start_child(conn: socket.socket, listener: socket.socket, selector: selectors.DefaultSelector,
                 children: dict[int, _Child]) -> None:
    """Fork the child that `conn`'s request asks for, and watch its exit and its runner's
    connection; a failed fork is this measurement's error, not the server's."""
    selector.unregister(conn)
    request = _read_line(conn)
    if request is None:
        conn.close()
        return
    # The child closes what is the server's: the socket, the selector, the
    # connections and pidfds of its siblings, its own connection.
    own = [listener.fileno(), selector.fileno(), conn.fileno()]
    own += [fd for c in children.values() for fd in (c.pidfd, c.conn.fileno() if c.conn else -1) if fd >= 0]
    try:
        pid = _fork(json.loads(request), server=os.getpid(), close=own)
    except OSError as e:  # out of memory or processes: this measurement fails, not the server
        _send(conn, {"error": f"the fork server could not fork ({e})"})
        conn.close()
        return
    child = children[pid] = _Child(pid, os.pidfd_open(pid), conn)
    selector.register(child.pidfd, selectors.EVENT_READ, ("exit", child))
    selector.register(conn, selectors.EVENT_READ, ("control", child))
    _send(conn, {"pid": pid})


def _read_line(conn: socket.socket) -> bytes | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:  # the runner's side is gone; nothing is waiting for the answer
        pass


def _fork(request: dict[str, Any], server: int, close: list[int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The child: from here on it must never return into the server's loop.
    status = 1
    try:
        for fd in close:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # the server's lifeline
        os.dup2(devnull, 1)
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_APPEND), 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        from profiler.processes import worker

        worker.die_with_parent(server)  # the server dies with the runner, its children with it
        worker.pin(request.get("cpus"))  # before the child's backend starts its thread pools
        worker.run(request["point"], Path(request["result"]))
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


# --- the runner's side -----------------------------------------------------------------


class Forked:
    """A measuring child of a fork server, waited for and killed through the server,
    with the part of `subprocess.Popen`'s interface the runner uses."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = b""
        self.returncode: int | None = None
        reply = self._message(None)
        if reply is None or "error" in reply:
            conn.close()
            raise ForkServerError(reply["error"] if reply else "the fork server ended before it forked the measuring process")
        self.pid: int = reply["pid"]

    def _message(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; None at end of stream; TimeoutError if none within `timeout`."""
        while b"\n" not in self._buffer:
            self._conn.settimeout(timeout)
            chunk = self._conn.recv(4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                reply = self._message(timeout)
            except TimeoutError:
                raise subprocess.TimeoutExpired(f"measuring process {self.pid}", timeout or 0.0) from None
            self._conn.close()
            if reply is None:  # the server died; its children were killed with it
                raise ForkServerError("the fork server died while the measuring process ran; "
                                      "the process was killed with it", status="crash")
            self.returncode = os.waitstatus_to_exitcode(reply["status"])
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                self._conn.sendall(b"kill\n")
            except OSError:  # the server is gone, and its children with it
                pass


class ForkServer:
    """One server process, started with `environ` (the measuring processes' environment)
    by the interpreter `python` (None: this one; another: a JAX release's environment)."""

    def __init__(self, environ: Mapping[str, str], python: str | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="profiler-forkserver-")
        self._socket = str(Path(self._dir.name) / "socket")
        self._log = open(Path(self._dir.name) / "stderr", "w+")  # closed by close()
        self._lock = threading.Lock()
        self._closed = False
        self._ready = False
        # In the sweep's process group: killing the sweep's group ends the server too.
        self._proc = subprocess.Popen(
            [python or sys.executable, "-m", "profiler.processes.forkserver", self._socket],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=dict(environ),
        )

    def ready(self) -> None:
        """Wait until the server has imported what a measurement needs (seconds)."""
        if self._ready:
            return
        assert self._proc.stdout is not None  # Popen(stdout=PIPE)
        if self._proc.stdout.readline() == b"ready\n":
            self._ready = True
            return
        self._proc.wait()
        try:
            self._log.seek(0)
            said = [line.strip() for line in self._log.read().splitlines() if line.strip()][-1:]
        except ValueError:  # closed meanwhile: the sweep was interrupted
            said = []
        self.close()
        raise ForkServerError(f"the fork server did not start (exit status {self._proc.returncode}) {' '.join(said)}".strip())

    def alive(self) -> bool:
        return self._proc.poll() is None

    def fork(self, point_json: str, result: Path, stderr: Path, cpus: list[int] | None = None) -> Forked:
        """Fork a child that measures the point and writes its rows to `result`, confined
        to the cores `cpus` (None: those of the server)."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        request = {"point": point_json, "result": str(result), "stderr": str(stderr), "cpus": cpus}
        try:
            conn.connect(self._socket)
            conn.sendall(json.dumps(request).encode() + b"\n")
        except OSError as e:
            conn.close()
            raise ForkServerError(f"the fork server is unreachable ({e})") from None
        return Forked(conn)

    def close(self, kill: bool = False) -> None:
        """End the server and its children: at once (`kill`), or once it has read the end
        of its lifeline (it kills its children then)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        assert self._proc.stdin is not None and self._proc.stdout is not None  # Popen(stdin=PIPE, stdout=PIPE)
        if not kill:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:  # its children die with it (PR_SET_PDEATHSIG)
            self._proc.kill()
        self._proc.wait()
        for file in (self._proc.stdin, self._proc.stdout, self._log):
            file.close()
        self._dir.cleanup()


# Variables that change on every call without changing what a measurement does: pytest
# names the running test in PYTEST_CURRENT_TEST, so profile() calls from a test suite would
# each start a server (seconds of imports) of their own. Servers are told apart without them.
_PER_CALL = frozenset({"PYTEST_CURRENT_TEST"})


class ServerPool:
    """Fork servers by environment, each started when first needed and restarted if it died."""

    def __init__(self) -> None:
        self._servers: dict[tuple[tuple[str, str], ...], ForkServer] = {}
        self._locks: dict[tuple[tuple[str, str], ...], threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = False

    def prestart(self, environ: Mapping[str, str], python: str | None = None) -> None:
        """Start the server of `environ` without waiting for it: its imports (seconds) run
        while the sweep sets up, or while another server's children measure."""
        threading.Thread(target=self._start_quietly, args=(environ, python), daemon=True).start()

    def _start_quietly(self, environ: Mapping[str, str], python: str | None) -> None:
        try:
            self.server(environ, python)
        except ForkServerError:  # said again, as rows, by the measurement that needs it
            pass

    def server(self, environ: Mapping[str, str], python: str | None = None) -> ForkServer:
        """The server of `environ` and interpreter `python` (None: this one), started now if
        there is none or it died."""
        key = (("", python or sys.executable), *sorted((k, v) for k, v in environ.items() if k not in _PER_CALL))
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one start per environment; other environments' servers stay usable
            with self._lock:
                server = self._servers.get(key)
            if server is not None and server.alive():
                return server
            if server is not None:
                server.close()
            # Started and registered at once, before it is ready: close() comes before the
            # start (none is started) or after it (and stops it). A prestart that close() came
            # between ran on in its thread while the process exited: its temporary folder went
            # at exit under it, and bad input printed a thread's traceback after its one line.
            with self._lock:
                if self._closed:
                    raise ForkServerError("the sweep is over: its fork servers are closed")
                server = ForkServer(environ, python)
                self._servers[key] = server
            server.ready()
            return server

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, kill: bool = False) -> None:
        """Close every server (see ForkServer.close); a server starting now is stopped."""
        with self._lock:
            self._closed = True
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close(kill=kill)


if __name__ == "__main__":
    serve(sys.argv[1])
