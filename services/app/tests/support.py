"""Running the real processes the tests talk to: celery workers, gunicorn, beat."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
BIN = APP_DIR / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    """A child process with its output in a log file the tests can read."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        # The start scripts find celery/gunicorn on PATH, as in the image.
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        self.popen = subprocess.Popen(
            argv,
            cwd=APP_DIR,
            env={**os.environ, "PATH": path, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (warm shutdown), then SIGKILL the whole group if it does not exit in time."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def start_worker(name: str, queues: str, env: dict, log_dir: Path, concurrency: int = 2):
    heartbeat = log_dir / f"{name}.heartbeat"
    heartbeat.unlink(missing_ok=True)
    process = Process(
        name,
        [str(BIN / "worker")],
        {
            **env,
            "CELERY_WORKER_QUEUES": queues,
            "CELERY_WORKER_POOL_NAME": name,
            "CELERY_WORKER_CONCURRENCY": str(concurrency),
            "CELERY_HEARTBEAT_FILE": str(heartbeat),
            "CELERY_HEARTBEAT_INTERVAL": "1",
        },
        log_dir,
    )
    process.heartbeat = heartbeat
    # The heartbeat appears once the consumer holds a broker connection: the worker is ready.
    wait_for(lambda: heartbeat.exists() or not process.alive(), 60, what=f"worker {name} ready")
    assert process.alive(), f"worker {name} exited:\n{process.log()[-3000:]}"
    return process


def start_web(env: dict, log_dir: Path, name: str = "web"):
    import requests

    port = free_port()
    process = Process(
        name,
        [str(BIN / "web")],
        {
            **env,
            "PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"{name}-metrics"),
            "GUNICORN_WORKERS": "2",
        },
        log_dir,
    )
    process.url = f"http://127.0.0.1:{port}"

    def up():
        if not process.alive():
            raise AssertionError(f"gunicorn {name} exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(process.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, 60, what=f"gunicorn {name} up")
    return process
