"""End-to-end autoscaling on the real Compose stack (tests/autoscale/run.sh starts it, AUTOSCALE=1).

Real images, real Redis/Postgres, real workers, the real companion and the real autoscaler
driving the engine (Podman or Docker) through its socket. Knobs come from the env file:
polling 5 s, max 3, scale-down window 30 s, -100 % per period.

The stack runs three pools: run.sh applied README's "Adding a pool" (`reports`) to the copy it
starts, and the last test checks that the autoscaler scales that pool with nothing added by hand.

Env: ENV_FILE (ports and knobs), COMPOSE_PROJECT_NAME, AUTOSCALE=1 (for tools/compose.sh),
AUTOSCALE_E2E_THIRD_POOL (0: the stack runs without README's pool; its test is skipped).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stack import ENV, QUEUE_METRICS, compose, task_status, wait_for

QUEUE_METRICS = QUEUE_METRICS + "/metrics"
AUTOSCALER = f"http://127.0.0.1:{ENV['AUTOSCALER_PORT']}"
POLL = float(ENV["AUTOSCALE_POLLING_INTERVAL"])
WINDOW = float(ENV["AUTOSCALE_SCALE_DOWN_STABILIZATION_WINDOW"])
MAX = int(ENV["AUTOSCALE_MAX_REPLICAS"])
PROBE_QUEUE = "autoscale-probe"
NEW_POOL = "reports"  # README's "Adding a pool", as tests/e2e/test_pools.py


def django(code: str) -> object:
    """Run code in the web container's Django shell; it prints one JSON line at the end."""
    out = compose("exec", "-T", "web", "python", "manage.py", "shell", "-c", code, timeout=180)
    return json.loads(out.strip().splitlines()[-1])


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(url: str, name: str, **labels) -> float | None:
    return scrape(url).get((name, tuple(sorted(labels.items()))))


def states(ids: list[str]) -> dict[str, str]:
    return {tid: task_status(tid)["state"] for tid in ids}


def decisions(pool: str, direction: str) -> float:
    return metric(AUTOSCALER + "/metrics", "celery_stack_autoscaler_scaling_decisions_total", pool=pool,
                  direction=direction) or 0.0


def autoscaler_logs() -> list[dict]:
    out = []
    for line in compose("logs", "--no-color", "--no-log-prefix", "autoscaler").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def replica_names(service: str) -> list[str]:
    return sorted(compose("ps", "-a", "--format", "{{.Name}}", service).split())


class Watcher(threading.Thread):
    """Samples, twice a second, the autoscaler's `high` recommendation and scale-down count, and
    the most live workers each pool has had at once (a peak is transient: under load the last
    replica may join late and leave a window later, so waiting for it pool by pool can miss it)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples: list[tuple[float, float | None, float]] = []
        self.peak_workers = {"default": 0.0, "high": 0.0}

    def run(self):
        while not self.stop.is_set():
            try:
                m = scrape(AUTOSCALER + "/metrics")
                self.samples.append((
                    time.monotonic(),
                    m.get(("celery_stack_autoscaler_recommended_replicas", (("pool", "high"),))),
                    m.get(("celery_stack_autoscaler_scaling_decisions_total",
                           (("direction", "down"), ("pool", "high"))), 0.0),
                ))
                q = scrape(QUEUE_METRICS)
                for pool in self.peak_workers:
                    live = q.get(("celery_pool_workers", (("pool", pool),))) or 0.0
                    self.peak_workers[pool] = max(self.peak_workers[pool], live)
            except OSError:
                pass
            self.stop.wait(0.5)


def test_burst_scales_out_drains_and_scales_in_without_losing_or_killing_a_task():
    # ---- steady state: one replica per pool, autoscaler healthy
    wait_for(lambda: urllib.request.urlopen(AUTOSCALER + "/healthz", timeout=5).status == 200, 60,
               "autoscaler healthy")
    for pool in ("default", "high"):
        wait_for(lambda p=pool: metric(AUTOSCALER + "/metrics", "celery_stack_autoscaler_actual_replicas",
                                         pool=p) == 1, 30, f"{pool}: 1 replica")
    assert decisions("default", "up") == decisions("high", "up") == 0

    # ---- burst: 24 x 5 s on high, 18 x 6 s on default (the API routes long_job to default;
    # the Django shell can pick the queue, which is what we need to load `high`). Each backlog
    # keeps one replica busy for about half a minute, longer than a replica takes to start.
    ids = django(
        "import json; from jobs.tasks import long_job; "
        "h = [long_job.apply_async(kwargs={'seconds': 5, 'steps': 5}, queue='high').id for _ in range(24)]; "
        "d = [long_job.apply_async(kwargs={'seconds': 6, 'steps': 6}, queue='default').id for _ in range(18)]; "
        "print(json.dumps({'high': h, 'default': d}))"
    )
    burst = ids["high"] + ids["default"]
    watcher = Watcher()
    watcher.start()

    # ---- scale-out decided on the first poll that sees the backlog: within one polling interval
    seen = {}
    scaled = {}
    deadline = time.monotonic() + 60
    while len(scaled) < 2 and time.monotonic() < deadline:
        now = time.monotonic()
        q = scrape(QUEUE_METRICS)
        for pool in ("default", "high"):
            if pool not in seen and (q.get(("celery_pool_queued_messages", (("pool", pool),))) or 0) > 2:
                seen[pool] = now
            desired = metric(AUTOSCALER + "/metrics", "celery_stack_autoscaler_desired_replicas", pool=pool)
            if pool in seen and pool not in scaled and (desired or 0) > 1:
                scaled[pool] = now
        time.sleep(0.2)
    assert set(scaled) == {"default", "high"}, (seen, scaled)
    for pool in scaled:
        # +1 s: our own sampling of both endpoints.
        assert scaled[pool] - seen[pool] <= POLL + 1.0, (pool, scaled[pool] - seen[pool])
    deadline = time.monotonic() + 120
    while min(watcher.peak_workers.values()) < MAX and time.monotonic() < deadline:
        time.sleep(0.5)
    assert min(watcher.peak_workers.values()) >= MAX, f"live workers at most {watcher.peak_workers}, want {MAX}"
    assert len(replica_names("worker-default")) == MAX

    # ---- a task running on the replica that will be scaled in: the newest default replica
    # (scale-in removes newest first) also consumes a probe queue, and gets a 75 s long_job.
    hostname = compose("exec", "-T", "--index", str(MAX), "worker-default", "hostname").strip()
    probe = django(
        "import json; from kombu import Exchange, Queue; from config.celery import app; "
        "from jobs.tasks import long_job; "
        f"r = app.control.add_consumer('{PROBE_QUEUE}', destination=['default@{hostname}'], reply=True); "
        # A Queue object: the app declares only default and high (create_missing_queues off).
        f"q = Queue('{PROBE_QUEUE}', Exchange('{PROBE_QUEUE}', type='direct'), routing_key='{PROBE_QUEUE}'); "
        "t = long_job.apply_async(kwargs={'seconds': 75, 'steps': 25}, queue=q); "
        "print(json.dumps({'reply': r, 'id': t.id}))"
    )
    assert probe["reply"], probe
    probe_id = probe["id"]

    # ---- drain: every burst task succeeds
    wait_for(lambda: set(states(burst).values()) == {"SUCCESS"}, 240, "every burst task SUCCESS", interval=2)
    wait_for(lambda: states([probe_id])[probe_id] == "PROGRESS", 60, "probe running")

    # ---- scale-in of `high` (3 replicas): as the HPA does it, not before the stabilisation window
    # has passed since the last recommendation of 3 or more (the sampler has watched since the burst).
    wait_for(lambda: decisions("high", "down") >= 1, WINDOW + 60, "high scale-in", interval=0.2)
    seen_down = time.monotonic()
    watcher.stop.set()
    watcher.join(5)
    # The gauge keeps showing a recommendation until the next poll replaces it, so the last one
    # of MAX or more was made about one polling interval before the last sample that shows it.
    last_at_max = max(t for t, rec, _ in watcher.samples if rec is not None and rec >= MAX) - POLL
    first_down = min([t for t, _, down in watcher.samples if down >= 1] + [seen_down])
    held = first_down - last_at_max
    assert held >= WINDOW - 1, f"high scaled in {held:.1f}s after its last recommendation >= {MAX}; window {WINDOW}s"
    # default: the probe is its only work (1 active task => 1 replica), so it scales in too,
    # newest first, which is the probe's replica.
    wait_for(lambda: decisions("default", "down") >= 1, WINDOW + 60, "default scale-in")

    # ---- the probe finishes on its draining replica; then that replica goes, cleanly.
    wait_for(lambda: states([probe_id])[probe_id] == "SUCCESS", 90, "probe SUCCESS", interval=1)
    probe_container = f"{os.environ['COMPOSE_PROJECT_NAME']}-worker-default-{MAX}"
    removed = wait_for(
        lambda: [ln for ln in autoscaler_logs() if ln["message"] == "replica removed"
                 and ln["container"] == probe_container],
        60, "probe replica removed")[0]
    assert removed["exit_code"] == 0, removed  # warm shutdown, not SIGKILL after the grace period
    assert removed["drain_seconds"] >= 5, removed  # it waited for the probe task
    # The task was not redelivered to the surviving replica (acks_late would have done that if
    # its worker had been killed).
    assert probe_id not in compose("logs", "--no-color", "worker-default")

    for pool, service in (("default", "worker-default"), ("high", "worker-high")):
        wait_for(lambda s=service: len(replica_names(s)) == 1, 120, f"{service}: back to 1 replica")
        assert metric(AUTOSCALER + "/metrics", "celery_stack_autoscaler_actual_replicas", pool=pool) == 1
    for ln in autoscaler_logs():
        if ln["message"] == "replica removed":
            assert ln["exit_code"] == 0, ln
    assert set(states([*burst, probe_id]).values()) == {"SUCCESS"}


@pytest.mark.skipif(os.environ.get("AUTOSCALE_E2E_THIRD_POOL", "1") == "0",
                    reason="AUTOSCALE_E2E_THIRD_POOL=0: the stack runs without README's pool")
def test_a_pool_added_as_the_readme_says_is_scaled_out_and_back_in():
    """README's third pool got here through its pools.yaml entry and `make pools` only. A backlog
    in its queue raises its desired and actual replicas above 1 and its live workers follow;
    drained, it goes back to one replica, every removed replica stopping cleanly."""
    scaler, service = AUTOSCALER + "/metrics", f"worker-{NEW_POOL}"
    wait_for(lambda: metric(scaler, "celery_stack_autoscaler_actual_replicas", pool=NEW_POOL) == 1, 60,
             f"the autoscaler to report {NEW_POOL}: 1 replica")
    assert len(replica_names(service)) == 1
    ups, downs = decisions(NEW_POOL, "up"), decisions(NEW_POOL, "down")

    # 15 x 8 s on one process (concurrency 1): two minutes of work for a single replica, far
    # more than a scale-out takes. The queue is named, not a Queue object: every process
    # declares it (CELERY_TASK_QUEUES, generated from pools.yaml).
    ids = django(
        "import json; from jobs.tasks import long_job; "
        f"print(json.dumps([long_job.apply_async(kwargs={{'seconds': 8, 'steps': 4}}, queue='{NEW_POOL}').id "
        "for _ in range(15)]))"
    )
    wait_for(lambda: (metric(scaler, "celery_stack_autoscaler_desired_replicas", pool=NEW_POOL) or 0) > 1,
             POLL * 3 + 10, f"{NEW_POOL}: desired replicas above 1")
    wait_for(lambda: metric(scaler, "celery_stack_autoscaler_actual_replicas", pool=NEW_POOL) == MAX, 60,
             f"{NEW_POOL}: {MAX} replicas for the autoscaler")
    assert decisions(NEW_POOL, "up") > ups
    # The clones are workers of the pool, consuming its queue: the companion counts them.
    wait_for(lambda: metric(QUEUE_METRICS, "celery_pool_workers", pool=NEW_POOL) == MAX, 90,
             f"{NEW_POOL}: {MAX} live workers")
    assert len(replica_names(service)) == MAX

    # ---- drain: every task succeeds, in the new pool, on more than one of its replicas
    wait_for(lambda: set(states(ids).values()) == {"SUCCESS"}, 240, f"every {NEW_POOL} task SUCCESS", interval=2)
    workers = {task_status(tid)["result"]["worker"] for tid in ids}
    assert all(w.startswith(f"{NEW_POOL}@") for w in workers), workers
    assert len(workers) > 1, workers

    # ---- scale-in after the stabilisation window, back to the one replica `make up` started
    wait_for(lambda: decisions(NEW_POOL, "down") > downs, WINDOW + 60, f"{NEW_POOL} scale-in")
    wait_for(lambda: len(replica_names(service)) == 1, 120, f"{service}: back to 1 replica")
    assert metric(scaler, "celery_stack_autoscaler_actual_replicas", pool=NEW_POOL) == 1
    assert metric(scaler, "celery_stack_autoscaler_desired_replicas", pool=NEW_POOL) == 1
    wait_for(lambda: metric(QUEUE_METRICS, "celery_pool_workers", pool=NEW_POOL) == 1, 60,
             f"{NEW_POOL}: 1 live worker")
    removed = [ln for ln in autoscaler_logs() if ln["message"] == "replica removed"
               and ln["container"].startswith(f"{os.environ['COMPOSE_PROJECT_NAME']}-{service}-")]
    assert len(removed) == MAX - 1, removed
    assert all(ln["exit_code"] == 0 for ln in removed), removed
