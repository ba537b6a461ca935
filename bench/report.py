"""The bench's verdict: every headline figure next to its target, PASS or MISS, as a table for
the terminal and as the `targets` list of results.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KIND_NAMES = {"rds": "RDS", "s3": "S3", "cloudsql": "Cloud SQL", "gcs": "GCS"}


@dataclass(frozen=True)
class Target:
    figure: str
    value: Callable[[dict[str, Any]], Any]
    text: str
    met: Callable[[Any, dict[str, Any]], bool]


def _at_most(limit: float) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, _: value is not None and value <= limit


def _at_least(limit: float) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, _: value is not None and value >= limit


def _get(*path: str) -> Callable[[dict[str, Any]], Any]:
    def value(results: dict[str, Any]) -> Any:
        found: Any = results
        for key in path:
            if not isinstance(found, dict) or key not in found:
                return None
            found = found[key]
        return found

    return value


TARGETS = (
    Target("ready_ratio_to_floor", _get("ready_ratio_to_floor"), "<= 1.5", _at_most(1.5)),
    Target("k8s_writes_per_object", _get("k8s_writes_per_object"), "<= 3", _at_most(3)),
    *(
        Target(f"sweep_call_reduction {KIND_NAMES[k]}", _get("sweep_call_reduction", k), ">= 50", _at_least(50))
        for k in ("rds", "cloudsql", "gcs")
    ),
    Target(
        "S3 setting reads per bucket per sweep",
        _get("details", "steady", "sweeps", "s3", "setting_reads_per_bucket"),
        "<= managed settings (5)",
        lambda value, r: (
            value is not None and value <= _get("details", "steady", "sweeps", "s3", "managed_setting_reads")(r)
        ),
    ),
    Target("steady_sweep_k8s_writes", _get("steady_sweep_k8s_writes"), "= 0", lambda v, _: v == 0),
    Target(
        "drift_detect_p99_seconds",
        _get("drift_detect_p99_seconds"),
        "<= interval + 5 s",
        lambda v, r: v is not None and v <= r["drift_interval_seconds"] + 5,
    ),
    Target("rss_mb_10k", _get("rss_mb_10k"), "<= 250", _at_most(250)),
    Target("resume_seconds", _get("resume_seconds"), "<= 60", _at_most(60)),
    Target("resume_create_calls", _get("resume_create_calls"), "= 0", lambda v, _: v == 0),
    Target("objects_stuck_not_ready", _get("objects_stuck_not_ready"), "= 0", lambda v, _: v == 0),
)


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for target in TARGETS:
        value = target.value(results)
        status = "n/a" if value is None else ("PASS" if target.met(value, results) else "MISS")
        rows.append({"figure": target.figure, "value": value, "target": target.text, "status": status})
    return rows


def table(results: dict[str, Any]) -> str:
    """The final table: measured figures first, then every target with PASS / MISS."""
    params = results["params"]
    lines = [
        f"kumo bench: N={params['n']} Databases + {params['n']} Buckets, scale {results.get('scale_objects')} objects, "
        f"sweep interval {params['interval']:.0f}s, {results['machine']['cores']} cores"
        + (" (QUICK: sizes too small for the targets)" if params["quick"] else ""),
        "",
    ]
    figures = [
        ("ready_seconds", results.get("ready_seconds")),
        ("floor_seconds", results.get("floor_seconds")),
        ("drift_detect_p50_seconds", results.get("drift_detect_p50_seconds")),
        ("drift_interval_seconds", results.get("drift_interval_seconds")),
        ("rss_mb_1k", f"{results.get('rss_mb_1k')} (at {results.get('rss_objects_1k')} objects)"),
        ("rss_mb_10k", f"{results.get('rss_mb_10k')} (at {results.get('rss_objects_10k')} objects)"),
    ]
    for kind, name in KIND_NAMES.items():
        kumo = _get("sweep_cloud_calls_per_resource", kind)(results)
        baseline = _get("baseline_cloud_calls_per_resource", kind)(results)
        figures.append((f"cloud calls/resource/interval {name}", f"kumo {kumo} vs polling {baseline}"))
    width = max(len(name) for name, _ in figures)
    lines += [f"  {name:<{width}}  {value}" for name, value in figures]
    lines.append("")
    rows = results["targets"]
    widths = [max(len(str(row[key])) for row in [*rows, _HEADER]) for key in ("figure", "value", "target", "status")]
    for row in [_HEADER, *rows]:
        cells = [str(row[key]).ljust(w) for key, w in zip(("figure", "value", "target", "status"), widths, strict=True)]
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


_HEADER = {"figure": "figure", "value": "value", "target": "target", "status": "status"}
