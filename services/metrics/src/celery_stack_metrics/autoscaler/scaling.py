"""The replica decision of the chart's KEDA ScaledObject + HPA, for one pool, without Kubernetes.

The chart (helm/celery-stack, KEDA Prometheus trigger, metricType AverageValue) gives:

    backlog  = sum(celery_pool_queued_messages{pool}) + sum(celery_pool_active_tasks{pool})
    desired  = ceil(backlog / targetPerReplica)                      (KEDA, AverageValue)

and KEDA hands that to an HPA, which adds what this module reproduces, in the HPA's order
(k8s pkg/controller/podautoscaler/horizontal.go, normalizeDesiredReplicasWithBehaviors):

1. tolerance: a usage ratio within 10 % of the current replica count changes nothing;
2. stabilisation: scale up to the *lowest* recommendation of the scale-up window (0 s by default:
   immediately), scale down to the *highest* recommendation of the scale-down window (300 s), so a
   gap between bursts does not shed replicas that are needed again a minute later;
3. rate policies: up by at most max(+pods, +percent) per period, down by at most -percent per
   period, measured from the replica count at the start of the period;
4. clamp to [min, max].

KEDA's own part: cooldownPeriod and activationThreshold only concern the 1 <-> 0 step, which
applies only when min is 0 (never under Compose, see settings.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The HPA's --horizontal-pod-autoscaler-tolerance default.
TOLERANCE = 0.1


@dataclass(frozen=True)
class Policy:
    """One HPA scaling direction. pods/percent of 0 disable that policy."""

    stabilization_window: float
    pods: int
    percent: int
    period: float


@dataclass(frozen=True)
class Knobs:
    """The chart's values: autoscaling.{minReplicas,maxReplicas,targetPerReplica,behavior,keda.*}
    (their defaults are declared once, in settings.py)."""

    min_replicas: int
    max_replicas: int
    target_per_replica: float  # 0 = the pool's concurrency, read from the metrics
    polling_interval: float
    cooldown_period: float
    activation_threshold: float
    scale_up: Policy
    scale_down: Policy


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int  # what to run now
    recommendation: int  # ceil(backlog / target) before stabilisation, limits and bounds
    reason: str


@dataclass
class PoolScaler:
    """Keeps the history the HPA keeps (recommendations, scale events) for one pool."""

    knobs: Knobs
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, replica delta)
    last_active: float | None = None

    def decide(self, now: float, backlog: float, target: float, current: int) -> Decision:
        """The replica count for this poll. `target` is the per-replica backlog to aim for."""
        k = self.knobs
        if target <= 0:
            raise ValueError("target per replica must be positive")
        if backlog > k.activation_threshold:
            self.last_active = now
        if k.min_replicas == 0:
            # KEDA owns 0 <-> 1; the HPA underneath never goes below 1.
            if current == 0:
                if backlog > k.activation_threshold:
                    return Decision(0, 1, 1, "activation: backlog above threshold")
                return Decision(0, 0, 0, "inactive")
            idle_since = self.last_active if self.last_active is not None else -math.inf
            if backlog <= k.activation_threshold and now - idle_since >= k.cooldown_period:
                return Decision(current, 0, 0, "cooldown period over: scale to zero")

        raw = math.ceil(backlog / target)
        if current > 0 and abs(backlog / (target * current) - 1.0) <= TOLERANCE:
            raw = current  # within tolerance: the HPA keeps the current count
        desired, reason = self._stabilise(now, raw, current)
        desired, limit_reason = self._limit(now, desired, current)
        return Decision(current, desired, raw, limit_reason or reason)

    def _stabilise(self, now: float, raw: int, current: int) -> tuple[int, str]:
        up_cut = now - self.knobs.scale_up.stabilization_window
        down_cut = now - self.knobs.scale_down.stabilization_window
        up_rec = down_rec = raw
        for when, rec in self.recommendations:
            if when > up_cut:
                up_rec = min(up_rec, rec)
            if when > down_cut:
                down_rec = max(down_rec, rec)
        self.recommendations.append((now, raw))
        horizon = max(self.knobs.scale_up.stabilization_window, self.knobs.scale_down.stabilization_window)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - horizon]
        rec = min(max(current, up_rec), down_rec)
        if rec == raw:
            return rec, "recommendation"
        if rec > raw:
            return rec, "scale-down stabilisation window holds a higher recommendation"
        return rec, "scale-up stabilisation window holds a lower recommendation"

    def _changes(self, now: float, period: float) -> tuple[int, int]:
        added = sum(d for t, d in self.events if d > 0 and t > now - period)
        removed = -sum(d for t, d in self.events if d < 0 and t > now - period)
        return added, removed

    def _limit(self, now: float, desired: int, current: int) -> tuple[int, str]:
        k = self.knobs
        reason = ""
        if desired > current:
            up = k.scale_up
            added, removed = self._changes(now, up.period)
            start = current - added + removed
            limit = max(start + up.pods if up.pods else start, math.ceil(start * (1 + up.percent / 100)))
            if desired > limit:
                desired, reason = limit, f"scale-up limit: at most {limit} within {up.period:g}s"
        elif desired < current:
            down = k.scale_down
            added, removed = self._changes(now, down.period)
            start = current - added + removed
            proposals = []
            if down.pods:
                proposals.append(start - down.pods)
            if down.percent:
                proposals.append(int(start * (1 - down.percent / 100)))
            limit = min(proposals) if proposals else current
            if desired < limit:
                desired, reason = limit, f"scale-down limit: at least {limit} within {down.period:g}s"
        lower = max(k.min_replicas, 1)
        if desired < lower:
            desired, reason = lower, f"at min replicas ({lower})"
        elif desired > k.max_replicas:
            desired, reason = k.max_replicas, f"at max replicas ({k.max_replicas})"
        return desired, reason

    def applied(self, now: float, delta: int) -> None:
        """Record a scale event that happened, for the rate policies."""
        if delta:
            self.events.append((now, delta))
            horizon = max(self.knobs.scale_up.period, self.knobs.scale_down.period)
            self.events = [(t, d) for t, d in self.events if t > now - horizon]
