"""How the pipeline starts dbt: ahead of its run when it can, and out without the teardown.

`assets/bin/dbt` (the executable dagster-dbt is given) runs this file with the pipeline's
interpreter. Two costs of a dbt process are not dbt's work:

- **Start-up.** Importing dbt takes 2.3-3.2 s (a production day's run, 2 cores), and
  loading the DuckDB adapter ~0.6 s more, all of it before dbt reads the project. A range
  run (`pipelines.runner.run_range`) knows dbt comes next as soon as the ingestion ends,
  while the lake checks still run on one core: it starts `serve` then (`WarmDbt`), a
  process that imports dbt and its adapter and waits on a Unix socket named by
  INFERLEDGER_DBT_SOCKET. The launcher, started by dagster-dbt as usual, hands that process
  its argument list, environment, working folder and its own stdin, stdout and stderr
  (SCM_RIGHTS), forwards SIGINT and SIGTERM to it, and exits with its exit status. dbt then
  runs exactly as if started by dagster-dbt, only already imported. One process serves one
  invocation; without a socket, or if it cannot be reached, dbt starts cold here.
- **Exit.** Once dbt has finished (its artifacts written, its connections closed: the
  warehouse checkpointed), Python's teardown of dbt's objects took 0.65-0.7 s. The exit
  handlers (logging's flush, multiprocessing's semaphores) are run, then the process ends
  without the teardown.
- **Garbage collection.** dbt holds the GIL while it collects, so its pauses lengthen the
  build's critical path. Its modules (imported once, kept to the end) are frozen out of
  the collector, and the young generation is collected every 20,000 allocations rather
  than 700: one build is a short process. On a production day: 0.74-0.77 s of
  collections, then 0.39-0.41 s.

Only the standard library is imported before dbt: this file runs outside the package.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

SOCKET_ENV = "INFERLEDGER_DBT_SOCKET"
# The interpreter `assets/bin/dbt` runs this file with (the pipeline's own, so its dbt).
PYTHON_ENV = "INFERLEDGER_DBT_PYTHON"
LAUNCHER = Path(__file__).resolve().parent / "bin" / "dbt"
_HEADER = struct.Struct("!I")  # length of the request that follows
_PID = struct.Struct("!q")
_STATUS = struct.Struct("!i")


def _settle_gc() -> None:
    """Leave what is imported out of every later collection, and collect less often: this
    process runs one dbt invocation and ends."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def run_dbt(argv: Sequence[str]) -> int:
    """dbt's command line in this process; its exit status."""
    from dbt.cli.main import cli

    _settle_gc()
    try:
        cli.main(args=list(argv), prog_name="dbt")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _finish() -> None:
    """What an exit does short of the interpreter's teardown: the exit handlers (logging's
    flush, multiprocessing's semaphores) and the standard streams flushed."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def fast_exit(code: int) -> NoReturn:
    """End the process after its exit handlers, skipping the interpreter's teardown."""
    _finish()
    os._exit(code)


def main(argv: Sequence[str]) -> NoReturn:
    """The `dbt` executable: a warm process when one is waiting, else dbt started here."""
    path = os.environ.get(SOCKET_ENV)
    if path:
        code = _call_warm(path, argv)
        if code is not None:
            sys.exit(code)
    fast_exit(run_dbt(argv))


def _call_warm(path: str, argv: Sequence[str]) -> int | None:
    """Hand the invocation to the process waiting at `path`; its exit status, or None
    when nobody waits there (dbt then starts cold)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    # dbt's environment does not name the socket: it serves one invocation, this one.
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    request = json.dumps({"argv": list(argv), "env": env, "cwd": os.getcwd()}).encode()
    with conn:
        socket.send_fds(conn, [_HEADER.pack(len(request)) + request], [0, 1, 2])
        pid_bytes = _recv_exactly(conn, _PID.size)
        if pid_bytes is None:
            return None  # it went away before starting: start cold
        pid = _PID.unpack(pid_bytes)[0]

        def forward(signum: int, _frame: object) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        status = _recv_exactly(conn, _STATUS.size)
    # dbt has started (its output may be out): a lost status is a failure, never a retry.
    return 1 if status is None else _STATUS.unpack(status)[0]


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    return data


def serve(listening_fd: int, path: str) -> NoReturn:
    """Import dbt, then run the one invocation a launcher hands over on the socket `path`.

    The socket (inherited as `listening_fd`) listens from before this process started, so
    a launcher that comes early waits for the imports instead of starting dbt cold.
    """
    listener = socket.socket(fileno=listening_fd)
    import dbt.adapters.duckdb  # the adapter dbt would load first
    import dbt.cli.main  # noqa: F401

    conn, _ = listener.accept()
    listener.close()
    os.unlink(path)
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    (size,) = _HEADER.unpack(header + (_recv_exactly(conn, _HEADER.size - len(header)) or b""))
    request = json.loads(_recv_exactly(conn, size) or b"{}")
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    conn.sendall(_PID.pack(os.getpid()))
    code = run_dbt(request["argv"])
    _finish()  # dbt's output all out before the launcher reports the end
    conn.sendall(_STATUS.pack(code))
    os._exit(code)


class WarmDbt:
    """A `serve` process started now for the next dbt invocation of this process's runs.

    While open, INFERLEDGER_DBT_SOCKET names its socket, so the next `assets/bin/dbt`
    started from here hands it its invocation. Closing unsets the variable and stops the
    process if nothing used it.
    """

    def __init__(self, folder: Path) -> None:
        import subprocess

        self.path = str(Path(folder) / f"dbt-{os.getpid()}.sock")
        Path(self.path).unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(self.path)
            listener.listen(1)
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve",
                 str(listener.fileno()), self.path],
                pass_fds=[listener.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        self._previous = os.environ.get(SOCKET_ENV)
        os.environ[SOCKET_ENV] = self.path

    def close(self) -> None:
        import subprocess

        if self._previous is None:
            os.environ.pop(SOCKET_ENV, None)
        else:
            os.environ[SOCKET_ENV] = self._previous
        if self.process.poll() is None and Path(self.path).exists():
            self.process.terminate()  # never handed an invocation
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        Path(self.path).unlink(missing_ok=True)


if __name__ == "__main__":
    # Run as a file: its folder (the assets package) must not shadow anything dbt imports.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3])
    main(sys.argv[1:])
