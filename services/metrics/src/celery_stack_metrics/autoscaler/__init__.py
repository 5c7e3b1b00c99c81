"""celery-stack-autoscaler: queue-driven autoscaling of the Compose worker pools.

Every polling interval it reads each pool's backlog (queued + active tasks) from
celery-stack-metrics (or Prometheus), computes the replica count the chart's KEDA ScaledObject
would (scaling.py), and makes the Compose service `worker-<pool>` run that many replicas through
the engine's Docker-compatible API:

- up: new containers cloned from a running replica of the service (replicas.clone_spec), started;
- down: the newest replicas get SIGTERM and the pool's stop_grace_period (a Celery warm
  shutdown: no new tasks, running ones finish), then are removed.

Configured by environment variables (compose/README.md, "Autoscaling").

Modules: settings (the environment), signal (the backlog, from the companion or Prometheus),
scaling (the chart's KEDA + HPA decision), replicas (the worker containers, through the engine
API of ../engine.py) and loop (the process: poll, decide, act; /metrics and /healthz).
"""

from .loop import main

__all__ = ["main"]
