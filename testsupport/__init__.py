"""What the repository's tests, benchmarks and checks share: a free port, a silent one, polling until
something happens, reading a Compose env file, asking a container engine's API socket /_ping.

Standard library only, and not installed anywhere: each user puts the repository root on
sys.path, because the users run in five different ways and a path entry works in all of them:

- services/app and services/metrics tests: pytest's `pythonpath` option in their pyproject.toml
  (`../..`). Neither uv project, lock file nor image changes (the image build context is
  services/, which never sees this directory).
- tests/e2e, tests/autoscale, tests/chaos: run.sh runs pytest with PYTHONPATH=tests:. from the root.
- bench/bench.py and monitoring/stack_check.py: scripts that already extend sys.path for their
  other imports; stack_check.py runs under the system python3 with no environment at all, which
  is what rules out an installed package.
- the shell tools (tools/compose.sh, tools/isolated-stack.sh, tools/container-engine/engine.sh):
  `PYTHONPATH=<root> python3 -m testsupport free-port | engine-answers SOCKET` (__main__.py);
  tools/ensure-engine.sh: `... engine-has-image SOCKET IMAGE`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def silent_port():
    """A port on 127.0.0.1 that accepts connections and never answers: a hung server (a frozen
    or partitioned database or broker, whose kernel still completes the handshake)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


class WaitTimeout(AssertionError):
    """wait_for ran out of time. An AssertionError, so pytest reports a failed expectation."""


def wait_for(predicate, timeout: float = 20.0, what: str = "a condition", *, interval: float = 0.1, retry_on=()):
    """Call predicate() until it returns something truthy, and return that value.

    After `timeout` seconds, raise WaitTimeout naming `what` and the last value seen. An exception
    of a `retry_on` type counts as "not yet" (e.g. OSError while a service restarts) and is shown
    as the last value; any other exception propagates at once (a process that died fails fast).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = predicate()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def read_env_file(path) -> dict[str, str]:
    """KEY=value lines of a Compose env file (.env); comments, blank lines and anything without
    `=` are skipped, and quotes around a value are removed as Compose does."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def engine_answers(socket_path: str, timeout: float = 3.0) -> bool:
    """Does a Docker-compatible engine API (Docker, or Podman's service) answer /_ping with 200
    on this unix socket?"""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def _engine_get(socket_path: str, path: str, timeout: float = 3.0) -> bytes:
    """The status line of GET <path> on an engine API unix socket (b"" when it does not answer)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: engine\r\n\r\n".encode())
            return sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return b""


def engine_has_image(socket_path: str, image: str) -> bool:
    """Does the engine on this socket hold the image (e.g. redis:7, prom/prometheus:v2.55.1)
    locally? Docker and Podman both resolve the short names of Docker Hub here."""
    return b" 200 " in _engine_get(socket_path, f"/images/{urllib.parse.quote(image, safe='/:@')}/json")
