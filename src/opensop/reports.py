"""Metrics and status views: pure arithmetic over what the store counted."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from opensop.definition import models
from opensop.store.metrics import ProcessActivity, ProcessCounts


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; 0.0 when there are none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def metrics_report(
    *,
    window_seconds: float,
    counts: Sequence[ProcessCounts],
    durations: Sequence[float],
    step_health: dict[str, int],
    step_stats: Sequence[tuple[str, str, int, int, list[float]]],
    human_waiting: tuple[int, datetime | None],
    now: datetime,
) -> dict[str, Any]:
    started = sum(c.started for c in counts)
    completed = sum(c.completed for c in counts)
    failed = sum(c.failed for c in counts)
    finished = completed + failed
    waiting, oldest = human_waiting
    return {
        "window_seconds": int(window_seconds),
        "totals": {
            "instances_started": started,
            "instances_completed": completed,
            "instances_failed": failed,
            "completion_rate": round(completed / finished, 4) if finished else 0.0,
            "avg_duration_seconds": round(sum(durations) / len(durations), 3) if durations else 0.0,
            "p50_duration_seconds": round(percentile(durations, 0.50), 3),
            "p95_duration_seconds": round(percentile(durations, 0.95), 3),
        },
        "per_process": [
            {
                "process_name": c.process_name,
                "version": c.version,
                "started": c.started,
                "completed": c.completed,
                "failed": c.failed,
                "in_flight": c.in_flight,
            }
            for c in counts
        ],
        "step_health": step_health,
        "per_step": [
            {
                "process_name": process,
                "step_id": step_id,
                "finished": total,
                "failed": failed_steps,
                "mean_duration_seconds": round(sum(d) / len(d), 3) if d else 0.0,
            }
            for process, step_id, total, failed_steps, d in step_stats
        ],
        "human_steps_waiting": waiting,
        "oldest_human_wait_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
    }


def status_row(
    definition: models.ProcessDefinition,
    activity: ProcessActivity,
    last_run_at: str | None,
    next_run_at: str | None,
) -> dict[str, Any]:
    scheduled = isinstance(definition.trigger, models.ScheduleTrigger | models.IntervalTrigger)
    if activity.active_instances:
        state = "running"
    elif scheduled:
        state = "scheduled"
    else:
        state = "open"
    last_status = {"completed": "ok", "failed": "error"}.get(activity.last_state or "", "never")
    return {
        "name": definition.name,
        "version": definition.version,
        "state": state,
        "last_status": last_status,
        "last_run_at": last_run_at,
        "next_run_at": next_run_at,
        "active_instances": activity.active_instances,
    }
