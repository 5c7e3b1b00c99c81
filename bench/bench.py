"""make bench: the five benchmarks of celery-stack. Writes bench/results/latest.json and SUMMARY.md.

Every comparison is made within one run and reported as a ratio: the machine is shared and noisy.

Host part (1-3): processes started from the app's venv with the stack's real settings
(services/app config), a private redis-server on a free loopback port (AOF everysec, like the
Compose Redis) and a scratch Postgres database `celery_stack_bench` on 127.0.0.1 (the result
backend). Stack part (4-5) and the cost part (6): the Compose stack under the engine tools/compose.sh
finds, as its own project (bench/run.sh starts it). Every load loop is bounded in count and time; all traffic stays
on loopback or the bench's own containers.

Usage (bench/run.sh does this): bench.py host | stack | cost | report
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "services" / "app"
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "services" / "metrics" / "src"))  # the engine client, for 4-5
sys.path.insert(0, str(ROOT))  # testsupport/: free ports, polling, the env file
from testsupport import free_port, read_env_file, wait_for  # noqa: E402

# What the stack changes, set back to Celery's own defaults (reference.md (d); Celery 5.x docs).
# Time limits stay: the app refuses to start a worker without them, and they cost nothing per task.
CELERY_DEFAULTS = {
    "worker_prefetch_multiplier": 4,
    "worker_disable_prefetch": False,
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    "task_track_started": False,
    "result_extended": False,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "worker_soft_shutdown_timeout": 0.0,
    "worker_enable_soft_shutdown_on_idle": False,
}
POOLS = {  # the Compose values of each pool
    "high": {"queues": "high", "limits": (30, 45)},
    "default": {"queues": "default", "limits": (300, 360)},
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, q):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ==== host part: benchmarks 1-3 ===================================================================


class Host:
    """A private Redis, a scratch database, and the app's Django/Celery set up in this process."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="celery-stack-bench."))
        self.redis_port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        pg = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
        subprocess.run(["psql", f"{pg}/postgres", "-qc", "DROP DATABASE IF EXISTS celery_stack_bench"], check=True)
        subprocess.run(["psql", f"{pg}/postgres", "-qc", "CREATE DATABASE celery_stack_bench"], check=True)
        self.env = {
            "DJANGO_SECRET_KEY": "bench-" + os.urandom(24).hex(),
            "DATABASE_URL": f"{pg}/celery_stack_bench",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CELERY_HEARTBEAT_FILE": str(self.tmp / "heartbeat"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "prom"),
            "PYTHONPATH": f"{BENCH}{os.pathsep}{APP}",
        }
        (self.tmp / "prom").mkdir()
        os.environ.update(self.env)
        wait_for(lambda: self._ping(), 10, "redis-server")
        subprocess.run([VENV_BIN / "python", "manage.py", "migrate", "--noinput", "-v", "0"], cwd=APP,
                       env={**os.environ}, check=True)
        sys.path[:0] = [str(APP), str(BENCH)]
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django

        django.setup()
        import redis
        from django_celery_results.models import TaskResult

        from config.celery import app

        self.app = app
        self.r = redis.Redis(port=self.redis_port)
        self.TaskResult = TaskResult

    def _ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), 0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def reset(self):
        for key in self.r.scan_iter("*"):
            if not key.startswith(b"_kombu.binding"):
                self.r.delete(key)
        self.TaskResult.objects.all().delete()

    def worker(self, name, queues, *, conf=None, pool="prefork", concurrency=2, loglevel="INFO", limits=(30, 45),
               env=None):
        env = {
            **os.environ,
            **(env or {}),
            "CELERY_WORKER_CONCURRENCY": str(concurrency),
            "CELERY_TASK_SOFT_TIME_LIMIT": str(limits[0]),
            "CELERY_TASK_TIME_LIMIT": str(limits[1]),
            "BENCH_CELERY_CONF": json.dumps(conf or {}),
        }
        out = open(self.tmp / f"worker-{name}.log", "w")
        p = subprocess.Popen(
            [VENV_BIN / "celery", "--app", "benchapp", "--quiet", "worker", "--queues", queues,
             "--hostname", f"{name}@bench", "--pool", pool, "--concurrency", str(concurrency),
             "--loglevel", loglevel],
            cwd=APP, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(p)
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def close(self):
        for p in self.procs:
            self.stop(p, 10)
        self.redis.terminate()
        self.redis.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- 1. throughput -------------------------------------------------------------------------

    def prefill(self, n, queue):
        from jobs.tasks import add

        for _ in range(n):
            add.apply_async(args=(1, 2), queue=queue)

    def drain_rate(self, n, queue, timeout=300, profile=None, **worker_kw) -> float:
        """Pre-fill n no-op tasks, start the worker, time first to last completion (worker start-up
        excluded) from the result backend's date_done. With `profile`, py-spy samples the warm
        worker (main process and pool children) and the profile summary is stored in self.profile."""
        self.reset()
        self.prefill(n, queue)
        p = self.worker("t" + os.urandom(3).hex(), queue, **worker_kw)
        done = self.TaskResult.objects.filter(status="SUCCESS").count
        spy = None
        try:
            if profile:
                wait_for(lambda: done() >= min(200, n // 10), 60, "worker warm")
                spy_from, t_spy = done(), time.monotonic()
                spy = subprocess.Popen(["py-spy", "record", "--subprocesses", "--nonblocking", "--format", "raw",
                                        "--rate", str(PROFILE_RATE), "-o", str(profile), "--pid", str(p.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: done() >= n, timeout, f"drain of {n}", interval=0.2)
        finally:
            if spy:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
                self.profile = profile_summary(profile, done() - spy_from, time.monotonic() - t_spy)
            self.stop(p)
        from django.db.models import Max, Min

        span = self.TaskResult.objects.aggregate(a=Min("date_done"), b=Max("date_done"))
        return (n - 1) / (span["b"] - span["a"]).total_seconds()

    def raw_redis(self, n, queue) -> dict:
        """The ceiling: the same kombu messages, LPUSHed and BRPOPed by one client each."""
        self.reset()
        self.prefill(n, queue)
        msgs = self.r.lrange(queue, 0, -1)
        self.r.delete(queue)
        t = time.perf_counter()
        for m in msgs:
            self.r.lpush(queue, m)
        push = n / (time.perf_counter() - t)
        t = time.perf_counter()
        got = 0
        while got < n and self.r.brpop(queue, timeout=5):
            got += 1
        pop = got / (time.perf_counter() - t)
        return {"lpush_per_s": round(push), "brpop_per_s": round(pop)}

    # ---- 2. isolation --------------------------------------------------------------------------

    def isolation(self, shared: bool, slow=20_000, probes=200) -> dict:
        from jobs.tasks import add, long_job

        self.reset()
        t = time.monotonic()
        with self.app.producer_or_acquire() as producer:
            for _ in range(slow):
                long_job.apply_async(kwargs={"seconds": 1, "steps": 1}, queue="default", producer=producer)
        log(f"  {slow} slow tasks queued on default in {time.monotonic() - t:.0f}s")
        starts = {"BENCH_RECORD_STARTS": "1"}
        if shared:
            ws = [self.worker("shared", "default,high", concurrency=4, limits=(300, 360), env=starts)]
        else:
            ws = [self.worker("default", "default", limits=(300, 360), env=starts),
                  self.worker("high", "high", limits=(30, 45), env=starts)]
        try:
            # Workers busy with the slow backlog before the first probe.
            wait_for(lambda: self.TaskResult.objects.filter(status="STARTED").count() >= 2, 60, "slow tasks running")
            time.sleep(2)
            sent = {}
            for _ in range(probes):
                t_pub = time.time()
                sent[add.apply_async(args=(1, 1)).id] = t_pub
                time.sleep(0.025)
            # Publish-to-start: when the pool process began the task (benchapp's task_prerun hook).
            def probes_started():
                got = {k.decode(): float(v) for k, v in self.r.hgetall("bench:starts").items()}
                got = {tid: t for tid, t in got.items() if tid in sent}
                return got if len(got) >= probes else None

            started = wait_for(probes_started, 300, "probes started", interval=0.5)
            lat = [(started[tid] - t_pub) * 1000 for tid, t_pub in sent.items()]
        finally:
            for w in ws:
                self.stop(w, 20)
            self.r.delete("default", "high", "bench:starts")
        return {"p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1), "max_ms": round(max(lat), 1),
                "probes": len(lat), "slow_tasks_queued": slow}

    # ---- 3. enqueue API ------------------------------------------------------------------------

    def api(self, duration=15, connections=16) -> dict:
        self.reset()
        port = free_port()
        out = open(self.tmp / "gunicorn.log", "w")
        # Workers recycled every ~1,000 requests, so every run includes the recycles production
        # sees (5,000 +- 500 each) whatever this machine's speed: they were the p99 tail.
        recycle_after = 1000
        # The API needs a token; the rate limits would cap the throughput this measures.
        from jobs.models import ApiToken

        ApiToken.objects.filter(name="bench").delete()
        _, token = ApiToken.issue("bench", ["add"])
        web = subprocess.Popen(
            [VENV_BIN / "gunicorn", "config.wsgi:application", "--config", "python:config.gunicorn",
             "--bind", f"127.0.0.1:{port}"],
            cwd=APP, env={**os.environ, "RATELIMIT_ENABLE": "false", "METRICS_PORT": "0",
                          "GUNICORN_MAX_REQUESTS": str(recycle_after)},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        os.environ["BENCH_API_TOKEN"] = token  # post.lua reads it
        self.procs.append(web)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _http_ok(url + "/healthz"), 30, "gunicorn")
            # warm-up: every gunicorn worker imports and connects before the timed run
            subprocess.run(["wrk", "-t2", "-c4", "-d3s", "-s", str(BENCH / "post.lua"), url + "/api/tasks/add"],
                           capture_output=True, check=True, timeout=30)
            proc = subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(BENCH / "post.lua"),
                 url + "/api/tasks/add"], capture_output=True, text=True, check=True, timeout=duration + 30,
            )
        finally:
            self.stop(web)
            self.r.delete("high")
        text = proc.stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", text, re.M))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        total = int(re.search(r"(\d+) requests in", text).group(1))
        recycles = (self.tmp / "gunicorn.log").read_text().count("Autorestarting worker")
        return {"requests_per_s": round(rps), "p50": lat.get("50"), "p99": lat.get("99"),
                "p99_ms": _ms(lat.get("99")), "requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                "connections": connections, "seconds": duration, "gunicorn": "2 workers x 4 threads (gthread)",
                "worker_recycles": recycles, "recycle_after_requests": recycle_after, "wrk": text}


def _http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _ms(v):
    if not v:
        return None
    num, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return round(float(num) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)


PROFILE_RATE = 200  # py-spy samples per second


def profile_summary(path: Path, tasks: int, seconds: float, k: int = 12) -> dict:
    """From py-spy's raw output (one collapsed stack per line, rooted at `process <pid>:...`):
    CPU milliseconds per task in the worker's main process (consumer, acks, events, dispatch) and
    in its pool children (the task itself, the result write), and each one's hottest functions."""
    counts = {"main": {}, "pool children": {}}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        # Pool children's stacks are nested under the main process: `process <main>;process <child>;...`
        who = "pool children" if len(frames) > 1 and frames[1].startswith("process ") else "main"
        leaf = re.sub(r"\s*\(.*?/(site-packages|lib/python[\d.]+)/", " (", frames[-1])
        counts[who][leaf] = counts[who].get(leaf, 0) + int(n)
    out = {"file": path.name, "tasks": tasks, "seconds": round(seconds, 1),
           "note": "py-spy --nonblocking samples of running (not idle) Python threads"}
    for who, leaves in counts.items():
        total = sum(leaves.values())
        out[who] = {
            "cpu_ms_per_task": round(total / PROFILE_RATE * 1000 / max(tasks, 1), 2),
            "top_self": [{"frame": f, "share": round(c / total, 3)}
                         for f, c in sorted(leaves.items(), key=lambda x: -x[1])[:k]] if total else [],
        }
    return out


def host_part(n: int) -> dict:
    h = Host()
    out = {"environment": "host processes from services/app/.venv with the stack's settings; private "
                          "redis-server (AOF everysec) on loopback; Postgres result backend on 127.0.0.1",
           "cpus": os.cpu_count()}
    try:
        log("1. throughput")
        rounds = int(os.environ.get("BENCH_ROUNDS", "3"))

        def interleaved(configs: dict, queue: str, limits) -> dict:
            """Each configuration `rounds` times, in turn (noise hits them alike): label -> runs."""
            runs = {label: [] for label in configs}
            for _ in range(rounds):
                for label, kw in configs.items():
                    runs[label].append(round(h.drain_rate(n, queue, limits=limits, **kw)))
            return runs

        defaults = {"conf": CELERY_DEFAULTS, "loglevel": "WARNING"}
        tp = {"tasks_per_run": n, "rounds": rounds}
        for pool, spec in POOLS.items():
            runs = interleaved({"stack": {}, "defaults": defaults}, spec["queues"], spec["limits"])
            stack, dflt = statistics.median(runs["stack"]), statistics.median(runs["defaults"])
            raw = h.raw_redis(n, spec["queues"])
            tp[pool] = {"stack": round(stack), "celery_defaults": round(dflt), "runs": runs, "raw_redis": raw,
                        "stack_vs_defaults": round(stack / dflt, 2),
                        "stack_vs_raw_brpop": round(stack / raw["brpop_per_s"], 3)}
            log(f"  {pool}: {runs}, raw {raw}")
        # The search for the fastest worker configuration on this machine (high pool limits), from the
        # stack's settings and from Celery's defaults; every one stores its results, as the stack does.
        # One run each to screen, then the two fastest against the stack, interleaved, by median.
        stack_label = "stack (prefork c=2, prefetch 1, no Redis prefetch)"
        variants = {
            stack_label: {},
            "stack, prefork c=4": {"concurrency": 4},
            "stack, prefetch x4 (Redis prefetch on)": {
                "conf": {"worker_prefetch_multiplier": 4, "worker_disable_prefetch": False}},
            "stack, threads c=4": {"pool": "threads", "concurrency": 4},
            "stack, solo": {"pool": "solo", "concurrency": 1},
            "stack, log level WARNING": {"loglevel": "WARNING"},
            "stack, no task events": {"conf": {"worker_send_task_events": False, "task_send_sent_event": False}},
            "Celery defaults (prefork c=2)": defaults,
            "Celery defaults, prefork c=4": {**defaults, "concurrency": 4},
            "Celery defaults, threads c=4": {**defaults, "pool": "threads", "concurrency": 4},
            "Celery defaults, solo": {**defaults, "pool": "solo", "concurrency": 1},
            "Celery defaults, prefetch 1": {**defaults, "conf": {**CELERY_DEFAULTS, "worker_prefetch_multiplier": 1}},
        }
        search = {}
        for label, kw in variants.items():
            search[label] = round(h.drain_rate(n, "high", limits=(30, 45), **kw))
            log(f"  {label}: {search[label]}/s")
        finalists = sorted((k for k in search if k != stack_label), key=search.get, reverse=True)[:2]
        runs = interleaved({k: variants[k] for k in (stack_label, *finalists)}, "high", (30, 45))
        medians = {k: statistics.median(v) for k, v in runs.items()}
        best = max(finalists, key=medians.get)
        log(f"  confirmation: {runs}")
        tp["search_high_pool"] = search
        tp["fastest"] = {"config": best, "tasks_per_s": round(medians[best]), "runs": runs,
                         "stack_ratio": round(medians[stack_label] / medians[best], 2)}
        if shutil.which("py-spy"):
            raw = RESULTS / "profile-stack-high.txt"
            h.drain_rate(n, "high", limits=(30, 45), profile=raw)
            tp["profile"] = h.profile
        out["throughput"] = tp

        log("2. isolation")
        slow = int(os.environ.get("BENCH_SLOW_TASKS", "20000"))
        sep = h.isolation(shared=False, slow=slow)
        log(f"  separate pools: {sep}")
        shared = h.isolation(shared=True, slow=slow)
        log(f"  one worker, both queues: {shared}")
        out["isolation"] = {"separate_pools": sep, "shared_worker": shared,
                            "p99_ratio_shared_over_separate": round(shared["p99_ms"] / sep["p99_ms"], 1)}

        log("3. enqueue API")
        api = h.api()
        log(f"  {api['requests_per_s']} req/s, p99 {api['p99']}, non-2xx {api['non_2xx']}")
        out["api"] = api
    finally:
        h.close()
    return out


# ==== stack part: benchmarks 4-5 ==================================================================


def compose(*args, timeout=300, check=True) -> str:
    proc = subprocess.run([str(ROOT / "tools" / "compose.sh"), *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode:
        raise RuntimeError(f"compose {args}: {proc.stderr[-1500:]}")
    return proc.stdout


def scrape(url):
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def burst(env, mode: str, n: int, task_seconds: float, limit: float) -> dict:
    """Publish n tasks to `default`; sample backlog and replicas every second until drained."""
    qm = f"http://127.0.0.1:{env['QUEUE_METRICS_PORT']}/metrics"
    asc = f"http://127.0.0.1:{env['AUTOSCALER_PORT']}/metrics"
    code = (
        "from jobs.tasks import long_job; from config.celery import app\n"
        "with app.producer_or_acquire() as p:\n"
        f"    for _ in range({n}): long_job.apply_async(kwargs={{'seconds': {task_seconds}, 'steps': 1}}, "
        "queue='default', producer=p)\n"
    )
    pub = subprocess.Popen([str(ROOT / "tools" / "compose.sh"), "exec", "-T", "web", "python", "manage.py",
                            "shell", "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from celery_stack_metrics.engine import Engine

    # The engine API, not `compose ps`: one HTTP call instead of a compose process every second.
    engine, project = Engine(os.environ["DOCKER_HOST"]), os.environ["COMPOSE_PROJECT_NAME"]
    t0 = time.monotonic()
    samples, first_seen, first_up, published_at, drained_at = [], None, None, None, None
    while time.monotonic() - t0 < limit:
        t = time.monotonic() - t0
        try:
            q = scrape(qm)
        except OSError:
            time.sleep(1)
            continue
        queued = q.get(("celery_pool_queued_messages", (("pool", "default"),)), 0)
        active = q.get(("celery_pool_active_tasks", (("pool", "default"),)), 0)
        workers = q.get(("celery_pool_workers", (("pool", "default"),)), 0)
        replicas = len([c for c in engine.service_containers(project, "worker-default") if c["State"] == "running"])
        samples.append({"t": round(t, 1), "queued": queued, "active": active, "workers": workers,
                        "replicas": replicas})
        if first_seen is None and queued > 0:
            first_seen = t
        if mode == "on" and first_up is None:
            try:
                ups = scrape(asc).get(("celery_stack_autoscaler_scaling_decisions_total",
                                       (("direction", "up"), ("pool", "default"))), 0)
            except OSError:
                ups = 0
            if ups >= 1:
                first_up = t
        if published_at is None and pub.poll() is not None:
            published_at = t
        if published_at is not None and queued == 0 and active == 0 and t > published_at + 1:
            drained_at = t
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - t)))
    if pub.poll() is None:
        pub.kill()
    return {"mode": mode, "tasks": n, "task_seconds": task_seconds, "publish_seconds": published_at,
            "drain_seconds": drained_at, "backlog_first_seen": first_seen, "first_scale_up": first_up,
            "max_replicas": max(s["replicas"] for s in samples), "samples": samples}


def plot(off, on, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for run, color in ((off, "tab:red"), (on, "tab:blue")):
        ts = [s["t"] for s in run["samples"]]
        drained = run["drain_seconds"]
        label = f"autoscaler {run['mode']}: " + (f"drained in {drained:.0f}s" if drained else "not drained in time")
        ax1.plot(ts, [s["queued"] + s["active"] for s in run["samples"]], color=color, label=label)
        ax2.step(ts, [s["replicas"] for s in run["samples"]], color=color, where="post", label=f"{run['mode']}")
        if run["drain_seconds"]:
            ax1.axvline(run["drain_seconds"], color=color, ls=":")
    ax1.set_ylabel("backlog (queued + active)")
    ax1.set_title(f"Burst of {on['tasks']} tasks ({on['task_seconds'] * 1000:.0f} ms each) on the default pool")
    ax1.legend()
    ax2.set_ylabel("worker-default replicas")
    ax2.set_xlabel("seconds since the burst started")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def footprint(env) -> dict:
    from celery_stack_metrics.engine import Engine

    eng = Engine(os.environ["DOCKER_HOST"])
    images = {}
    base = None
    for img in eng._call("GET", "/images/json"):
        for tag in img.get("RepoTags") or []:
            name = tag.rsplit("/", 1)[-1]
            if name == "python:3.12-slim":
                base = img["Size"]
            for target in ("web", "worker", "beat", "flower", "exporter"):
                if name == f"{env.get('IMAGE_PREFIX', 'celery-stack')}-{target}:{env.get('IMAGE_TAG', 'latest')}":
                    images[target] = img["Size"]
    out = {"images_mb": {k: round(v / 1e6) for k, v in images.items()},
           "base_mb": round(base / 1e6) if base else None,
           "over_base_mb": {k: round((v - base) / 1e6) for k, v in images.items()} if base else None}
    rss = {}
    for c in eng._call("GET", "/containers/json?" + urllib.parse.urlencode(
            {"filters": json.dumps({"label": [f"com.docker.compose.project={os.environ['COMPOSE_PROJECT_NAME']}"]})})):
        svc = c["Labels"].get("com.docker.compose.service")
        stats = eng._call("GET", f"/containers/{c['Id']}/stats?stream=false")
        mem = stats.get("memory_stats", {})
        usage = mem.get("usage", 0) - (mem.get("stats", {}) or {}).get("inactive_file", 0)
        rss[svc] = round(usage / 1e6)
    out["idle_memory_mb"] = dict(sorted(rss.items()))
    out["memory_note"] = "cgroup memory usage minus inactive file cache, from the engine's stats API, stack idle"
    return out


def stack_part(n: int, task_seconds: float) -> dict:
    env = read_env_file(os.environ["ENV_FILE"])
    out = {"environment": "Compose stack under " + os.environ.get("DOCKER_HOST", "?") + ", 2 CPUs shared"}
    log("4. autoscaling: off (autoscaler stopped, worker-default at its 1 replica)")
    compose("stop", "autoscaler")
    off = burst(env, "off", n, task_seconds, limit=900)
    log(f"  off: drained in {off['drain_seconds']}s")
    compose("start", "autoscaler")
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{env['AUTOSCALER_PORT']}/healthz"), 60, "autoscaler healthy", interval=1)
    log("4. autoscaling: on")
    on = burst(env, "on", n, task_seconds, limit=900)
    log(f"  on: drained in {on['drain_seconds']}s, max {on['max_replicas']} replicas")
    plot(off, on, RESULTS / "autoscale.png")
    reaction = (on["first_scale_up"] - on["backlog_first_seen"]) if on["first_scale_up"] is not None else None
    out["autoscaling"] = {
        "off": off, "on": on, "plot": "autoscale.png",
        "speedup": round(off["drain_seconds"] / on["drain_seconds"], 2)
        if off["drain_seconds"] and on["drain_seconds"] else None,
        "scale_out_reaction_seconds": round(reaction, 1) if reaction is not None else None,
        "polling_interval": float(env.get("AUTOSCALE_POLLING_INTERVAL", 15)),
        "max_replicas": int(env.get("AUTOSCALE_MAX_REPLICAS", 4)),
    }
    log("5. footprint: wait for scale-in and idle")
    wait_for(lambda: len(compose("ps", "-q", "worker-default").split()) == 1, 900, "back to 1 replica", interval=5)
    time.sleep(20)
    out["footprint"] = footprint(env)
    return out


# ==== cost part: benchmark 6 ======================================================================
#
# CPU per task of every container of the stack, during a drain: the pool's worker is stopped, the
# tasks are published by a one-off container (the client: its CPU is not the stack's), the worker is
# started, and each container's cumulative CPU (the engine's stats API: the cgroup's usage) is read
# before the publish and after the drain, once the stack is back at idle. Then the same with the
# plain-Celery reference: the same image, app, container limits, Redis and Postgres result backend,
# Flower and both exporters stopped, the worker run with Celery's defaults (bench/benchapp.py,
# CELERY_DEFAULTS: no task events) in a one-off container of the pool's service.

OBSERVABILITY = ("flower", "exporter", "queue-metrics")
# The autoscaler would add replicas during the drains; it is opt-in, not part of `make up`.
COST_STOPPED = ("autoscaler", "engine-proxy")
REPORT_CHUNKS = [[1.0] * 100] * 4  # one report: 4 xsum + count_widgets, compile_report, publish_report
COST_WORKLOADS = {  # name -> the pool's service, what one published unit is, tasks per unit
    "no-op": {"service": "worker-high", "tasks_per_unit": 1,
              "publish": "tasks.add.apply_async((1, 2))", "what": "`add`"},
    "10 ms I/O": {"service": "worker-default", "tasks_per_unit": 1,
                  "publish": "tasks.long_job.apply_async(kwargs={'seconds': 0.01, 'steps': 1})",
                  "what": "`long_job(seconds=0.01, steps=1)`: a 10 ms sleep, its STARTED and PROGRESS states "
                          "written too (the app has no plainer sleeping task)"},
    "report workflow": {"service": "worker-default", "tasks_per_unit": len(REPORT_CHUNKS) + 3,
                        "publish": f"tasks.report_workflow('bench', {REPORT_CHUNKS!r}).apply_async()",
                        "what": f"`report_workflow` ({len(REPORT_CHUNKS)} chunks of 100: chain(chord(xsum x "
                                f"{len(REPORT_CHUNKS)} + count_widgets -> compile_report) -> publish_report))"},
}


def engine():
    from celery_stack_metrics.engine import Engine

    return Engine(os.environ["DOCKER_HOST"])


def project_containers(eng) -> list[dict]:
    """The running containers of this Compose project, one-off ones (compose run) included."""
    return eng._call("GET", "/containers/json?" + urllib.parse.urlencode(
        {"filters": json.dumps({"label": [f"com.docker.compose.project={os.environ['COMPOSE_PROJECT_NAME']}"]})}))


def cpu_snapshot(eng) -> dict:
    """Container id -> (service, start time, cumulative CPU seconds) for every running container
    but the publisher. A container that starts later counts from zero: its cgroup is new."""
    snap = {}
    for c in project_containers(eng):
        name = c["Names"][0].lstrip("/")
        if name.endswith("-cost-publisher"):
            continue
        stats = eng._call("GET", f"/containers/{c['Id']}/stats?stream=false&one-shot=true")
        snap[c["Id"]] = (c["Labels"].get("com.docker.compose.service", name), started_at(eng, c["Id"]),
                         stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9)
    return snap


def cpu_by_service(before: dict, after: dict) -> tuple[dict, list]:
    """CPU seconds per service between two snapshots, and the services of containers that
    restarted in between: those count from their restart (their cgroup starts again at zero), so
    the CPU they used before it is missing."""
    out, restarted = {}, []
    for cid, (svc, started, t) in after.items():
        if cid in before and before[cid][1] != started:
            restarted.append(svc)
        elif cid in before:
            t -= before[cid][2]
        out[svc] = out.get(svc, 0.0) + t
    return out, sorted(set(restarted))


def total_cpu(eng) -> float:
    return sum(t for _, _, t in cpu_snapshot(eng).values())


def idle_rate(eng, seconds=15.0) -> float:
    """CPU cores the stack uses at rest (healthchecks, exporters' polling, beat)."""
    a = total_cpu(eng)
    time.sleep(seconds)
    return (total_cpu(eng) - a) / seconds


def settle(eng, idle: float, limit=90.0) -> float:
    """Wait until the stack is back at its idle CPU (Flower and the exporters may still be
    decoding the drain's last events), at most `limit` seconds. Returns the seconds waited."""
    t0, prev = time.monotonic(), total_cpu(eng)
    while time.monotonic() - t0 < limit:
        time.sleep(2)
        now = total_cpu(eng)
        if (now - prev) / 2 <= idle * 1.5 + 0.03:
            break
        prev = now
    return round(time.monotonic() - t0, 1)


class ResultCount:
    """One psql session in the postgres container for the whole benchmark: polling the result
    count every second starts no process and no backend there (a `compose exec` per poll would)."""

    def __init__(self, env):
        self.p = subprocess.Popen(
            [str(ROOT / "tools" / "compose.sh"), "exec", "-T", "postgres", "psql", "-U", env.get("POSTGRES_USER", "app"),
             "-d", env.get("POSTGRES_DB", "app"), "-tAq", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def query(self, sql: str) -> str:
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the psql session in the postgres container ended")
        return line.strip()

    def reset(self):
        self.query("DELETE FROM django_celery_results_taskresult; DELETE FROM django_celery_results_chordcounter; "
                   "SELECT 1;")

    def succeeded(self) -> int:
        return int(self.query("SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'SUCCESS';"))

    def close(self):
        self.p.stdin.close()
        self.p.wait(30)


def one_off(service: str, name: str, conf: dict, *options: str) -> list[str]:
    """`compose run` arguments for a one-off container of `service` with bench/benchapp.py mounted
    and BENCH_CELERY_CONF applied: the publisher, and the reference's worker."""
    return ["run", *options, "--no-deps", "--name", f"{os.environ['COMPOSE_PROJECT_NAME']}-{name}",
            "-v", f"{BENCH}:/bench:ro", "-e", "PYTHONPATH=/bench:/app", "-e", f"BENCH_CELERY_CONF={json.dumps(conf)}",
            service]


def publish(workload: dict, units: int, conf: dict) -> float:
    """Publish `units` of the workload from a one-off container; returns the seconds it took."""
    code = ("import django; django.setup(); import benchapp; from jobs import tasks\n"
            f"for _ in range({units}): {workload['publish']}\n")
    t = time.monotonic()
    compose(*one_off(workload["service"], "cost-publisher", conf, "--rm", "-T"), "python", "-c", code, timeout=600)
    return round(time.monotonic() - t, 1)


def worker_log(eng, cid: str) -> list[tuple[float, str]]:
    """(time, message) of a worker container's JSON log lines (config/logs.py: `time` is UTC with
    milliseconds; the engine's own timestamps are whole seconds under Podman). The API multiplexes
    stdout and stderr into frames (8-byte header: stream, 0, 0, 0, big-endian length)."""
    conn = eng._connection(30)
    try:
        conn.request("GET", f"/v1.41/containers/{cid}/logs?stdout=1&stderr=1")
        raw = conn.getresponse().read()
    finally:
        conn.close()
    if raw[:1] in (b"\x00", b"\x01", b"\x02") and raw[1:4] == b"\x00\x00\x00":
        chunks, i = [], 0
        while i + 8 <= len(raw):
            size = int.from_bytes(raw[i + 4:i + 8], "big")
            chunks.append(raw[i + 8:i + 8 + size])
            i += 8 + size
        raw = b"".join(chunks)
    out = []
    for line in raw.decode(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            t = datetime.strptime(rec["time"], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
        except (ValueError, KeyError, TypeError):
            continue
        out.append((t.timestamp(), str(rec.get("message", ""))))
    return out


def started_at(eng, cid: str) -> float:
    stamp = eng.inspect(cid)["State"]["StartedAt"]
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")).timestamp()


def first_task(eng, cid: str) -> dict | None:
    """Seconds from the container's start (the engine's StartedAt) to the worker's `ready`, its
    first task received and its first task succeeded (the worker's JSON log)."""
    t0, got = started_at(eng, cid), {}
    for t, text in worker_log(eng, cid):
        if t < t0:  # a restarted container keeps the lines of its earlier runs
            continue
        for key, pattern in (("ready", r" ready\.$"), ("first_received", r"\] received$"),
                             ("first_succeeded", r"\] succeeded in ")):
            if key not in got and re.search(pattern, text):
                got[key] = round(t - t0, 2)
    return got if "first_succeeded" in got else None


def drain(eng, results: ResultCount, workload: dict, units: int, idle: float, conf: dict, start_worker, limit=900):
    """One measured drain: the pool's worker is already stopped. Returns the figures and the
    container id of the worker that ran it."""
    results.reset()
    before = cpu_snapshot(eng)
    t0 = time.monotonic()
    pub_s = publish(workload, units, conf)
    t_start = time.monotonic()
    worker_id = start_worker()
    expected = units * workload["tasks_per_unit"]
    wait_for(lambda: results.succeeded() >= expected, limit, f"drain of {expected} tasks", interval=1)
    drain_s = time.monotonic() - t_start
    settle_s = settle(eng, idle)
    after = cpu_snapshot(eng)
    window = time.monotonic() - t0
    cpu, restarted = cpu_by_service(before, after)
    if restarted:
        log(f"  restarted during the window (counted from their restart): {restarted}")
    return {"restarted_in_window": restarted, "tasks": expected, "units": units, "publish_seconds": pub_s, "drain_seconds": round(drain_s, 1),
            "settle_seconds": settle_s, "window_seconds": round(window, 1),
            "idle_cpu_seconds_in_window": round(idle * window, 2),
            "cpu_s_per_1000_tasks": {k: round(v * 1000 / expected, 3) for k, v in sorted(cpu.items())},
            "total_cpu_s_per_1000_tasks": round(sum(cpu.values()) * 1000 / expected, 3)}, worker_id


def service_container(eng, service: str) -> str:
    """The service's first replica (after benchmark 4 the autoscaler may leave stopped ones)."""
    found = [c for c in eng.service_containers(os.environ["COMPOSE_PROJECT_NAME"], service)
             if c["Labels"].get("com.docker.compose.oneoff", "False") != "True"
             and c["Labels"].get("com.docker.compose.container-number", "1") == "1"]
    if len(found) != 1:
        raise RuntimeError(f"{service}: {len(found)} first replicas")
    return found[0]["Id"]


def stop_service(eng, service: str):
    """Through the engine, not `compose stop`/`start`: `compose start` starts the service's
    dependencies too, and so runs the one-shot `migrate` again."""
    eng._call("POST", f"/containers/{service_container(eng, service)}/stop", timeout=420, ok=(204, 304))


def start_service(eng, service: str) -> str:
    cid = service_container(eng, service)
    eng._call("POST", f"/containers/{cid}/start", timeout=60, ok=(204, 304))
    return cid


def proc_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, live ones and reaped ones (cutime/cstime)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def host_worker_cpu(n: int) -> dict:
    """The same worker and settings as worker-high (prefork c=4, stack settings, INFO) on the
    host (benchmarks 1-3's setup), the same method: start-up included, n no-op tasks."""
    h = Host()
    try:
        h.reset()
        h.prefill(n, "high")
        p = h.worker("costhost", "high", concurrency=4, limits=POOLS["high"]["limits"])
        t = time.monotonic()
        wait_for(lambda: h.TaskResult.objects.filter(status="SUCCESS").count() >= n, 600, "host drain", interval=0.5)
        drain_s = time.monotonic() - t
        cpu = proc_tree_cpu(p.pid)
        h.stop(p)
    finally:
        h.close()
    return {"tasks": n, "drain_seconds": round(drain_s, 1), "cpu_s_per_1000_tasks": round(cpu * 1000 / n, 3)}


def cost_part(n: int) -> dict:
    env = read_env_file(os.environ["ENV_FILE"])
    eng = engine()
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tasks_per_workload": n,
           "method": "engine stats API (cgroup CPU usage) per container, read before the publish and after the "
                     "drain and settle; publisher excluded (one-off container); worker start-up included",
           "workloads": {k: v["what"] for k, v in COST_WORKLOADS.items()}}
    compose("stop", *COST_STOPPED, check=False)
    compose("start", *OBSERVABILITY)  # running already after `make up`; again if a run was interrupted
    results = ResultCount(env)
    try:
        stack_conf, ref_conf = {}, CELERY_DEFAULTS
        out["idle_cores"] = {"stack": round(idle_rate(eng), 3)}
        log("6. cost: worker-high's own start-up, queue empty")
        stop_service(eng, "worker-high")
        cid = start_service(eng, "worker-high")
        wait_for(lambda: any(re.search(r" ready\.$", m) for t, m in worker_log(eng, cid) if t >= started_at(eng, cid)),
                 120, "worker-high ready", interval=1)
        time.sleep(3)
        out["worker_start_cpu_s"] = round(cpu_snapshot(eng)[cid][2], 2)
        out["stack"] = {}
        for name, w in COST_WORKLOADS.items():
            log(f"6. cost, stack: {name}")
            stop_service(eng, w["service"])
            units = max(1, n // w["tasks_per_unit"])
            fig, cid = drain(eng, results, w, units, out["idle_cores"]["stack"], stack_conf,
                             lambda service=w["service"]: start_service(eng, service))
            fig["restart_to_first_task"] = first_task(eng, cid)
            out["stack"][name] = fig
            log(f"  {fig['total_cpu_s_per_1000_tasks']} CPU-s per 1000 tasks, drain {fig['drain_seconds']} s")

        log("6. cost, plain Celery reference: Flower and both exporters stopped, Celery defaults")
        compose("stop", *OBSERVABILITY)
        out["idle_cores"]["reference"] = round(idle_rate(eng), 3)
        out["reference"] = {}
        ref_name = f"{os.environ['COMPOSE_PROJECT_NAME']}-cost-reference"
        for name, w in COST_WORKLOADS.items():
            log(f"6. cost, reference: {name}")
            stop_service(eng, w["service"])
            units = max(1, n // w["tasks_per_unit"])

            def start_reference_worker(service=w["service"]):
                queues = json.loads(compose("config", "--format", "json"))["services"][service]["environment"][
                    "CELERY_WORKER_QUEUES"]
                compose(*one_off(service, "cost-reference", ref_conf, "--detach"), "celery", "--app", "benchapp", "--quiet", "worker", "--queues", queues,
                        "--hostname", "reference@%h", "--pool", "prefork", "--loglevel", "WARNING")
                return ref_name

            try:
                fig, _ = drain(eng, results, w, units, out["idle_cores"]["reference"], ref_conf,
                               start_reference_worker)
            finally:
                eng._call("POST", f"/containers/{ref_name}/stop?t=30", timeout=60, ok=(204, 304, 404))
                eng._call("DELETE", f"/containers/{ref_name}?force=true", ok=(200, 204, 404))
                start_service(eng, w["service"])
            out["reference"][name] = fig
            log(f"  {fig['total_cpu_s_per_1000_tasks']} CPU-s per 1000 tasks, drain {fig['drain_seconds']} s")
        compose("start", *OBSERVABILITY)

        log("6. cold start: a second worker-high replica while a backlog waits")
        results.reset()
        publish(COST_WORKLOADS["no-op"], n, stack_conf)
        old = {c["Id"] for c in project_containers(eng)}
        compose("up", "--detach", "--no-recreate", "--no-deps", "--scale", "worker-high=2", "worker-high")
        new = [c["Id"] for c in project_containers(eng) if c["Id"] not in old
               and c["Labels"].get("com.docker.compose.service") == "worker-high"]
        cold = wait_for(lambda: first_task(eng, new[0]), 120, "the new replica's first task", interval=1)
        out["cold_start"] = cold
        log(f"  new replica: {cold}")
        compose("up", "--detach", "--no-recreate", "--no-deps", "--scale", "worker-high=1", "worker-high")
    finally:
        results.close()
    log("6. the same worker on the host (no-op)")
    out["host_worker"] = host_worker_cpu(n)  # last: Host() sets the host's broker URL in os.environ
    plot_cost(out, RESULTS / "cost.png")
    out["plot"] = "cost.png"
    return out


def plot_cost(cost: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{w}\n{setup}", cost[setup][w]["cpu_s_per_1000_tasks"])
            for w in COST_WORKLOADS for setup in ("stack", "reference")]
    services = sorted({s for _, split in bars for s in split},
                      key=lambda s: -sum(split.get(s, 0) for _, split in bars))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    bottom = [0.0] * len(bars)
    colors = plt.get_cmap("tab20").colors
    for i, svc in enumerate(services):
        vals = [split.get(svc, 0) for _, split in bars]
        ax.bar([b[0] for b in bars], vals, bottom=bottom, label=svc, color=colors[i % len(colors)])
        bottom = [a + b for a, b in zip(bottom, vals, strict=True)]
    ax.set_ylabel("CPU-seconds per 1,000 tasks")
    ax.set_title(f"Whole-stack CPU per task by service ({cost['tasks_per_workload']} tasks per workload, one run)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ==== report ======================================================================================


def summary(res: dict) -> str:
    tp, iso, api = res["throughput"], res["isolation"], res["api"]
    auto, foot = res["autoscaling"], res["footprint"]
    L = [f"# Benchmarks ({res['date']}, {res['machine']})", "",
         "One `make bench` run; every comparison is within that run. Absolute numbers are for this "
         "shared 2-CPU machine: read the ratios. Benchmarks 1-3 run host processes from the app's venv with "
         "the stack's settings (private Redis on loopback, Postgres result backend); 4-5 run the Compose stack.",
         "", f"Throughput figures are medians of {tp.get('rounds', 1)} interleaved runs of "
         f"{tp.get('tasks_per_run')} no-op tasks each.",
         "", "| Benchmark | Result | Target | Met |", "|---|---|---|---|"]
    for pool in ("high", "default"):
        t = tp[pool]
        runs = t.get("runs")
        spread = (f" (runs: stack {runs['stack']}, defaults {runs['defaults']})" if runs else "")
        L.append(f"| Throughput, `{pool}` worker (no-op, prefork c=2) | {t['stack']} tasks/s = "
                 f"{t['stack_vs_defaults']}x Celery defaults ({t['celery_defaults']}/s){spread}; raw Redis BRPOP "
                 f"{t['raw_redis']['brpop_per_s']}/s | not below defaults | "
                 f"{'yes' if t['stack_vs_defaults'] >= 1 else 'no'} |")
    f = tp["fastest"]
    L.append(f"| Stack vs fastest configuration found ({f['config']}: {f['tasks_per_s']}/s) | {f['stack_ratio']}x | "
             f">= 0.9x | {'yes' if f['stack_ratio'] >= 0.9 else 'no'} |")
    s, sh = iso["separate_pools"], iso["shared_worker"]
    L.append(f"| `high` publish-to-start, 20,000 slow tasks on `default` | separate pools p50 {s['p50_ms']} ms / "
             f"p99 {s['p99_ms']} ms; one shared worker p50 {sh['p50_ms']} / p99 {sh['p99_ms']} ms "
             f"({iso['p99_ratio_shared_over_separate']}x) | p99 < 15 ms | {'yes' if s['p99_ms'] < 15 else 'no'} |")
    L.append(f"| Enqueue API `POST /api/tasks/add` (wrk, {api['connections']} connections, {api['seconds']} s) | "
             f"{api['requests_per_s']} req/s, p99 {api['p99']}, {api['non_2xx']} non-2xx, "
             f"{api.get('worker_recycles', '?')} gunicorn worker recycles | - | - |")
    def secs(v):
        return f"{v:.0f} s" if v is not None else "not drained within the time limit"

    L.append(f"| Autoscaled drain, {auto['on']['tasks']} tasks ({auto['on']['task_seconds'] * 1000:.0f} ms each) | "
             f"{secs(auto['on']['drain_seconds'])} with (max {auto['on']['max_replicas']} replicas) vs "
             f"{secs(auto['off']['drain_seconds'])} without = {auto['speedup']}x | >= 3x | "
             f"{'yes' if (auto['speedup'] or 0) >= 3 else 'no'} |")
    r = auto["scale_out_reaction_seconds"]
    L.append(f"| Scale-out reaction (backlog visible -> first replica added) | {r} s, polling interval "
             f"{auto['polling_interval']:.0f} s | within one interval | "
             f"{'yes' if r is not None and r <= auto['polling_interval'] else 'no'} |")
    ob = foot.get("over_base_mb") or {}
    L.append(f"| Image size over the base ({foot.get('base_mb')} MB) | "
             + ", ".join(f"{k} +{v} MB" for k, v in ob.items()) + " | <= 120 MB each | "
             + ("yes" if ob and max(ob.values()) <= 120 else "no") + " |")
    L += ["", "Idle memory per service (MB): "
          + ", ".join(f"{k} {v}" for k, v in foot["idle_memory_mb"].items()) + ".", "",
          "Fastest-configuration search (`high` pool settings, tasks/s, one run each; the two fastest were "
          "then run again against the stack, interleaved): "
          + "; ".join(f"{k}: {v}" for k, v in tp["search_high_pool"].items()) + ".", "",
          ]
    prof = tp.get("profile")
    if prof and "main" in prof:
        def top(who):
            return ", ".join(f"{f['frame'].split(' (')[0]} {f['share']:.0%}" for f in prof[who]["top_self"][:4])

        L += [f"Profile of the stack's `high` worker, warm ({prof['tasks']} tasks, py-spy): the main process "
              f"spends {prof['main']['cpu_ms_per_task']} ms of CPU per task ({top('main')}); the pool children "
              f"{prof['pool children']['cpu_ms_per_task']} ms ({top('pool children')}).", ""]
    L += ["![autoscaling](autoscale.png)", ""]
    if "cost" in res:
        L += cost_summary(res)
    return "\n".join(L)


def cost_summary(res: dict) -> list[str]:
    c = res["cost"]
    ws = list(c["stack"])
    setups = ("stack", "reference")
    per = {(s, w): c[s][w]["cpu_s_per_1000_tasks"] for s in setups for w in ws}
    services = sorted({svc for split in per.values() for svc in split}, key=lambda x: -per[("stack", ws[0])].get(x, 0))

    def share(w):
        return sum(per[("stack", w)].get(x, 0) for x in OBSERVABILITY) / c["stack"][w]["total_cpu_s_per_1000_tasks"]

    def met(ok):
        return "met" if ok else "**missed**"

    noop = ws[0]
    stack_total, ref_total = (c[s][noop]["total_cpu_s_per_1000_tasks"] for s in setups)
    worker = per[("stack", noop)][COST_WORKLOADS[noop]["service"]]
    host = c["host_worker"]["cpu_s_per_1000_tasks"]
    cold = c["cold_start"]
    L = [f"## Whole-stack cost per task (benchmark 6, {c['date']}, {c['tasks_per_workload']} tasks per workload)", "",
         "CPU-seconds per 1,000 tasks (the same number is CPU-ms per task), for every container of the Compose "
         "stack, split by service: each container's cumulative CPU from the engine's stats API (its cgroup's usage), "
         "read before the tasks are published and after the pool's worker has drained them and the stack is back at "
         "idle. The pool's worker is stopped first and started after the publish, so its start-up is included "
         f"(worker-high alone, queue empty: {c.get('worker_start_cpu_s')} CPU-s). The publisher is a one-off "
         "container and is not counted (it is the client). Containers at rest use "
         f"{c['idle_cores']['stack']} cores (stack) and {c['idle_cores']['reference']} (reference); that idle CPU "
         "is part of each window. Autoscaler and engine proxy stopped (opt-in, not part of `make up`).", "",
         "Reference, plain Celery: the same stack with Flower, celery-exporter and celery-stack-metrics stopped, and "
         "the pool's worker in a one-off container of the same service (same image, app, concurrency and container "
         "limits, same Redis broker and Postgres result backend) run with Celery's defaults (bench/benchapp.py, "
         "`CELERY_DEFAULTS`: no task events, prefetch 4, no extended results, log level WARNING); its publisher "
         "sends no task-sent events either. Same work, same backend: only what the stack adds differs.", "",
         "Workloads: " + "; ".join(f"{w}: {what}" for w, what in c["workloads"].items()) + ".", "",
         "| Service | " + " | ".join(f"{w}, {s}" for w in ws for s in setups) + " |",
         "|---|" + "---:|" * (2 * len(ws))]
    for svc in services:
        L.append(f"| {svc} | " + " | ".join(f"{per[(s, w)][svc]:.2f}" if svc in per[(s, w)] else "-"
                                            for w in ws for s in setups) + " |")
    L.append("| **whole stack** | " + " | ".join(f"**{c[s][w]['total_cpu_s_per_1000_tasks']:.2f}**"
                                                for w in ws for s in setups) + " |")
    L.append("| drain, tasks/s (worker start-up included) | " + " | ".join(
        f"{c[s][w]['tasks'] / c[s][w]['drain_seconds']:.0f}" for w in ws for s in setups) + " |")
    L += ["", "Stack over reference: " + ", ".join(
        f"{w} {c['stack'][w]['total_cpu_s_per_1000_tasks'] / c['reference'][w]['total_cpu_s_per_1000_tasks']:.2f}x"
        for w in ws) + ". Flower + both exporters' share of the stack's CPU: "
          + ", ".join(f"{w} {share(w):.0%}" for w in ws) + ".", "",
          "| Target (issue #17, ratios from this run) | Result | Target | Met |", "|---|---|---|---|",
          f"| Whole-stack CPU per no-op task vs plain Celery | {stack_total:.2f} vs {ref_total:.2f} CPU-s per 1,000 = "
          f"{stack_total / ref_total:.2f}x | <= 1.25x | {met(stack_total / ref_total <= 1.25)} |",
          f"| Observability share (Flower + celery-exporter + celery-stack-metrics; the worker's cost of publishing "
          f"events is inside its own figure, not separated) | {share(noop):.0%} of the no-op whole-stack CPU | <= 15 % | "
          f"{met(share(noop) <= 0.15)} |",
          f"| Stack worker in its container vs the same worker and settings on the host (no-op, prefork c=4, "
          f"start-up included on both) | {worker:.2f} vs {host:.2f} CPU-s per 1,000 = {worker / host:.2f}x | <= 1.2x | "
          f"{met(worker / host <= 1.2)} |"]
    api = res.get("api") or {}
    if api.get("p50") and api.get("p99"):
        r = _ms(api["p99"]) / _ms(api["p50"])
        L.append(f"| Enqueue API p99 / p50, {api['connections']} connections (benchmark 3, run of {res['date']}) | "
                 f"{api['p99']} / {api['p50']} = {r:.1f}x | <= 4x | {met(r <= 4)} |")
    if cold:
        L.append(f"| New worker-high replica (`compose up --scale`, backlog waiting): container start to first task "
                 f"succeeded | {cold['first_succeeded']} s (worker ready at {cold.get('ready')} s, first task received "
                 f"at {cold.get('first_received')} s) | <= 5 s | {met(cold['first_succeeded'] <= 5)} |")
    restarts = [f"{s} {w}: {', '.join(c[s][w]['restarted_in_window'])}" for s in setups for w in ws
                if c[s][w].get("restarted_in_window")]
    if restarts:
        L += ["", "Containers that restarted during a window (counted from their restart only): "
              + "; ".join(restarts) + "."]
    L += ["", f"![cost per task by service]({c['plot']})", ""]
    return L


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else "report"
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"partial-{what}.json"
    if what == "host":
        partial.write_text(json.dumps(host_part(int(os.environ.get("BENCH_TASKS", "3000"))), indent=1))
    elif what == "stack":
        partial.write_text(json.dumps(stack_part(int(os.environ.get("BENCH_BURST", "10000")),
                                                 float(os.environ.get("BENCH_TASK_SECONDS", "0.1"))), indent=1))
    elif what == "cost":
        partial.write_text(json.dumps(cost_part(int(os.environ.get("BENCH_COST_TASKS", "2000"))), indent=1))
    elif what == "report":
        # A full run replaces every figure; `bench/run.sh cost` replaces only the cost section.
        parts = {p: RESULTS / f"partial-{p}.json" for p in ("host", "stack", "cost")}
        if parts["host"].exists() and parts["stack"].exists():
            host = json.loads(parts["host"].read_text())
            stack = json.loads(parts["stack"].read_text())
            res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "machine": f"{os.cpu_count()} CPUs, {os.uname().release}", **host, **stack}
            res["environment"] = {"host": host["environment"], "stack": stack["environment"]}
        else:
            res = json.loads((RESULTS / "latest.json").read_text())
        if parts["cost"].exists():
            res["cost"] = json.loads(parts["cost"].read_text())
        (RESULTS / "latest.json").write_text(json.dumps(res, indent=1) + "\n")
        (RESULTS / "SUMMARY.md").write_text(summary(res))
        for p in parts.values():
            p.unlink(missing_ok=True)
        print((RESULTS / "SUMMARY.md").read_text())
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
