"""Running the real processes the tests talk to: celery workers, gunicorn, beat."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from testsupport import free_port, wait_for

APP_DIR = Path(__file__).resolve().parent.parent
BIN = APP_DIR / "bin"


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


def start_worker(
    name: str, queues: str, env: dict, log_dir: Path, concurrency: int = 2, pool: str = ""
):
    """A worker of pool `pool` (default: its name): replicas of one pool share a pool name."""
    heartbeat = log_dir / f"{name}.heartbeat"
    heartbeat.unlink(missing_ok=True)
    process = Process(
        name,
        [str(BIN / "worker")],
        {
            **env,
            "CELERY_WORKER_QUEUES": queues,
            "CELERY_WORKER_POOL_NAME": pool or name,
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


def task_outlives_its_whole_worker(name: str, env: dict, log_dir: Path, connect) -> None:
    """A long_job starts on a worker (pool `name`, queue default), which dies with its pool
    (SIGKILL: node lost); the broker must deliver it again to a second worker, which runs it.
    `connect()` opens a connection to the broker those workers use."""
    from jobs import tasks

    first = start_worker(f"{name}-first", "default", env, log_dir, concurrency=1, pool=name)
    try:
        with connect() as conn, conn.Producer() as producer:
            result = tasks.long_job.apply_async(
                kwargs={"seconds": 3, "steps": 6}, producer=producer
            )
        wait_for(lambda: result.state == "PROGRESS", 30, what="long_job running on the first")
    finally:
        first.popen.send_signal(signal.SIGKILL)
        subprocess.run(["pkill", "-KILL", "-g", str(first.pid)], check=False)
        first.stop()
    second = start_worker(f"{name}-second", "default", env, log_dir, concurrency=1, pool=name)
    try:
        outcome = result.get(timeout=60)
        assert outcome["steps"] == 6
        assert f"long_job[{result.id}] received" in second.log()
    finally:
        second.stop()


def start_beat(name: str, env: dict, log_dir: Path) -> Process:
    heartbeat = log_dir / f"{name}.heartbeat"
    heartbeat.unlink(missing_ok=True)
    beat = Process(
        name, [str(BIN / "beat")], {**env, "CELERY_HEARTBEAT_FILE": str(heartbeat)}, log_dir
    )
    wait_for(lambda: heartbeat.exists() or not beat.alive(), 60, what=f"{name} ticking")
    assert beat.alive(), beat.log()[-2000:]
    return beat


def start_web(env: dict, log_dir: Path, name: str = "web", workers: int = 2):
    import requests

    port, metrics_port = free_port(), free_port()
    process = Process(
        name,
        [str(BIN / "web")],
        {
            **env,
            "PORT": str(port),
            "METRICS_PORT": str(metrics_port),
            "METRICS_ADDR": "127.0.0.1",
            "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"{name}-metrics"),
            "GUNICORN_WORKERS": str(workers),
        },
        log_dir,
    )
    process.url = f"http://127.0.0.1:{port}"
    process.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    def up():
        if not process.alive():
            raise AssertionError(f"gunicorn {name} exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(process.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, 60, what=f"gunicorn {name} up")
    return process


def start_sqs_server(port: int, log_dir: Path) -> Process:
    """moto in server mode: the SQS API over HTTP, in memory, one process (pyproject.toml)."""
    import requests

    process = Process(
        "moto", [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                 str(port)], {}, log_dir,
    )  # fmt: skip

    def up():
        if not process.alive():
            raise AssertionError(f"moto exited:\n{process.log()[-3000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1).ok
        except requests.RequestException:
            return False

    wait_for(up, 60, what="moto server up")
    return process


def create_sqs_queues(url: str, prefix: str, names: list[str], visibility_timeout: int):
    """What infrastructure code does in production: the queues, with their visibility timeout
    (config/sqs.py: SQS_ACCOUNT_ID makes them predefined; the app never creates one)."""
    import boto3

    from .testenv import SQS_ENV

    client = boto3.client(
        "sqs", endpoint_url=url.replace("sqs://", "http://"), region_name=SQS_ENV["SQS_REGION"]
    )
    for name in names:
        client.create_queue(
            QueueName=f"{prefix}{name}",
            Attributes={"VisibilityTimeout": str(visibility_timeout)},
        )
    return client
