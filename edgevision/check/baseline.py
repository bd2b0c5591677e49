"""Regression baselines: accuracy per metric and latency, stored once and compared on every later check.

Latency is stored raw and *normalised*: divided by a fixed reference workload (a matmul and a convolution)
timed in the same process just before and just after, so a baseline recorded on a quiet machine stays
comparable with a later run on a noisy one. The gate uses the normalised figure. The workload runs on one
thread and counts its fastest repeat: multithreaded, it swung twelvefold whenever another process or a
runtime's spinning pool shared the two cores, which the gate read as a regression.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from edgevision.hardware import cpu_line
from edgevision.bundle import atomic_write_json, now_iso, sha256_file
from edgevision.config import MetricTolerance
from edgevision.errors import BadInput

BASELINE_SCHEMA_VERSION = 1
DEFAULT_LATENCY_TOLERANCE = 0.10


def reference_workload_ms(repeats: int = 15) -> float:
    """Fastest time of a fixed CPU workload on one thread: a 384x384 float32 matrix product plus a 5x5 filter
    over 512x512, both in OpenCV with its thread pool set to one thread.

    One thread, because a runtime's worker pool that is still spinning after the model's last run stole the
    cores from a multithreaded workload: its fastest repeat came out 16 times slower right after an
    evaluation than a minute later, and the gate read that as a 1600 % regression."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384), dtype=np.float32)
    img = rng.standard_normal((512, 512), dtype=np.float32)
    kernel = np.ones((5, 5), np.float32) / 25
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        time.sleep(0.05)  # let spinning worker pools go idle
        times = []
        for _ in range(repeats + 2):
            t0 = time.perf_counter()
            cv2.gemm(a, a, 1.0, None, 0.0)
            cv2.filter2D(img, -1, kernel)
            times.append(time.perf_counter() - t0)
    finally:
        cv2.setNumThreads(threads)
    return float(np.min(times[2:]) * 1000)


def measure_latency(run, runs: int = 30, warmup: int = 5) -> dict:
    """Median latency of ``run()`` and the same normalised by the reference workload timed around it."""
    before = reference_workload_ms()
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    median = float(np.median(times) * 1000)
    return latency_record(median, min(before, reference_workload_ms()), runs)


def latency_record(median_ms: float, workload_ms: float, runs: int) -> dict:
    return {"median_ms": round(median_ms, 4), "workload_ms": round(workload_ms, 4),
            "normalised": round(median_ms / workload_ms, 5), "runs": runs}


def gate_latency(current: dict, baseline: dict, tolerance: float = DEFAULT_LATENCY_TOLERANCE) -> dict | None:
    """A failure when the normalised median latency grew by more than ``tolerance`` (a fraction)."""
    ratio = current["normalised"] / baseline["normalised"]
    if ratio > 1 + tolerance + 1e-12:
        return {"metric": "latency", "baseline": baseline, "current": current, "delta": round(ratio - 1, 4),
                "tolerance": {"max_increase": tolerance},
                "message": f"latency (normalised) is {(ratio - 1) * 100:.1f} % above the baseline "
                           f"({current['median_ms']:.2f} ms raw vs {baseline['median_ms']:.2f} ms); tolerance is "
                           f"{tolerance * 100:.0f} %"}
    return None


def gate_accuracy(current: dict[str, float], baseline: dict[str, float],
                  tolerances: dict[str, MetricTolerance]) -> list[dict]:
    """Failures for metrics that dropped more than their recipe budget below the baseline's value."""
    failures = []
    for metric, base in baseline.items():
        value = current.get(metric)
        if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
            continue
        tol = tolerances.get(metric)
        budget = tol.max_drop if tol is not None and tol.max_drop is not None else 0.5
        drop = base - value
        if drop > budget + 1e-9:
            failures.append({"metric": metric, "baseline": base, "current": value, "delta": round(-drop, 3),
                             "tolerance": {"max_drop": budget},
                             "message": f"{metric} is {drop:.2f} points below the baseline ({base:.2f} -> {value:.2f}); "
                                        f"tolerance is a drop of {budget:g}"})
    return failures


def accuracy_values(report: dict) -> dict[str, float]:
    """The artifact's metrics (or, without ground truth, its agreement) from a check report."""
    values = dict(report.get("metrics", {}).get("artifact", {}))
    values.update(report.get("agreement", {}))
    return {k: v for k, v in values.items() if isinstance(v, (int, float))}


def read_baseline(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--baseline {path}: no such file; create it with `edgevision check BUNDLE --baseline "
                       f"{path} --update-baseline`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BadInput(f"--baseline {path}: unreadable ({e}); recreate it with --update-baseline") from None
    if data.get("kind") != "baseline" or "metrics" not in data or "latency" not in data:
        raise BadInput(f"--baseline {path}: not an edgevision baseline; recreate it with --update-baseline")
    return data


def write_baseline(path: Path, bundle, report: dict, latency: dict) -> dict:
    data = {
        "schema_version": BASELINE_SCHEMA_VERSION, "kind": "baseline", "created": now_iso(),
        "bundle": {"model": bundle.meta.model, "target": bundle.meta.target, "precision": bundle.meta.precision,
                   "artifact_sha256": {name: sha256_file(bundle.path / g.artifact)
                                       for name, g in bundle.meta.graphs.items()}},
        "runtime": report["runtime"], "cpu": report.get("cpu"), "data": report["data"]["description"],
        "metrics": accuracy_values(report), "latency": latency,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path), data)
    return data


def apply_baseline(bundle, report: dict, path: Path, runner, tolerances: dict[str, MetricTolerance], *,
                   update: bool, latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE, runs: int = 30) -> dict:
    """Measure latency, then refresh the baseline (``update``, only when the check passed its reference
    tolerances) or compare against it. Returns the report's ``baseline`` section."""
    from edgevision.data.synthetic import SceneSpec, render_scene
    from edgevision.ops.preprocess import prepare
    from edgevision.tasks import get_task

    s = bundle.meta.imgsz
    batch = np.ascontiguousarray(prepare(render_scene(0, SceneSpec(size=(s, s))).image, s)[0][None])
    task = get_task(bundle.meta.task)
    latency = measure_latency(lambda: task.infer(runner, batch), runs)
    if update:
        if not report["passed"]:
            return {"file": str(path), "updated": False, "latency": latency, "failures": [],
                    "note": "not updated: the check failed its reference tolerances"}
        write_baseline(path, bundle, report, latency)
        return {"file": str(path), "updated": True, "latency": latency, "failures": []}
    base = read_baseline(path)
    failures = gate_accuracy(accuracy_values(report), base["metrics"], tolerances)
    lat_failure = gate_latency(latency, base["latency"], latency_tolerance)
    if lat_failure:
        failures.append(lat_failure)
    section = {"file": str(path), "updated": False, "latency": latency, "baseline_latency": base["latency"],
               "latency_tolerance": latency_tolerance, "failures": failures}
    recorded, here = base.get("cpu") or {}, report.get("cpu") or {}
    if recorded.get("kind") != here.get("kind") or recorded.get("onednn_max_cpu_isa") != here.get("onednn_max_cpu_isa"):
        section["note"] = (f"the baseline was recorded on another kind of CPU ({cpu_line(recorded or None)}); this "
                           f"one is {cpu_line(here or None)}: latency, and INT8 results of bundles quantized for "
                           f"one kind, can differ between them")
    return section
