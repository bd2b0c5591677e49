"""`edgevision bench`: artifact vs FP32 PyTorch latency, measured side by side in one process.

They take turns in blocks of five timed runs, each block led by an untimed run and the order rotating from
block to block (``interleaved``), so machine noise hits both alike and the ratio is trustworthy even when
absolute numbers wander.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgevision import __version__
from edgevision.bundle import Bundle, atomic_write_json, load_bundle, now_iso
from edgevision.check.peaks import measure_peaks, share_of_peak
from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.hardware import cpu_info
from edgevision.ops.preprocess import prepare
from edgevision.tasks import get_task

BENCH_SCHEMA_VERSION = 2  # 2: cpu, peaks and throughput
E2E_FRAME = (480, 640)  # a VGA camera frame: what end-to-end latency is quoted for


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"median_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "min_ms": round(float(ms.min()), 3), "mean_ms": round(float(ms.mean()), 3), "runs": int(ms.size)}


BLOCK = 5  # timed runs per visit; each visit starts with one untimed run


def interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int,
                progress: Callable[[int, int], None] | None = None, block: int = BLOCK) -> dict[str, list[float]]:
    """Time each callable ``runs`` times, visiting them round-robin with a rotating start, after ``warmup`` rounds.

    Each visit makes one untimed call and then up to ``block`` timed ones. Runtimes keep worker pools that spin
    after a call (ONNX Runtime, OpenMP, XNNPACK, TBB); switching backends on every run let one backend's pool
    steal the cores from the next one's measurement, and made every figure slower and noisier. The lead-in call
    gives the other pools time to go idle, while the rotation still spreads machine noise over all of them.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    visit = 0
    while len(times[names[0]]) < runs:
        order = names[visit % len(names):] + names[: visit % len(names)]
        todo = min(block, runs - len(times[names[0]]))
        for n in order:
            fns[n]()
            for _ in range(todo):
                t0 = time.perf_counter()
                fns[n]()
                times[n].append(time.perf_counter() - t0)
        visit += 1
        if progress:
            progress(len(times[names[0]]), runs)
    return times


def artifact_macs(bundle: Bundle) -> int | None:
    """Multiply-accumulates per inference: recorded at export, or counted from an ONNX artifact of an older
    bundle; None when neither is possible."""
    if bundle.meta.macs:
        return bundle.meta.macs
    graphs = bundle.meta.graphs.values()
    if all(g.artifact.endswith(".onnx") for g in graphs):
        try:
            from edgevision.graphs import count_macs

            return sum(count_macs(bundle.path / g.artifact) for g in graphs) or None
        except ImportError:  # the onnx package is not on every device
            return None
    return None


def int8_notes(precision: str, runtime: str, peaks: dict) -> list[str]:
    """When INT8 will not beat FP32 on this CPU: say so, with the measured peaks and the missing instruction."""
    if precision != "int8" or "int8" not in peaks or "fp32" not in peaks:
        return []
    i8, f32 = peaks["int8"]["gmac_per_s"], peaks["fp32"]["gmac_per_s"]
    missing = cpu_info().int8_slower_note(runtime)
    if i8 > 1.2 * f32 and not missing:
        return []
    why = missing or "its INT8 GEMMs are barely faster than FP32 ones"
    return [f"INT8 is likely no faster than FP32 on this CPU: {why} (same-run GEMM peaks: INT8 {i8:g} GMAC/s, "
            f"FP32 {f32:g} GMAC/s)"]


def xnnpack_notes(meta) -> list[str]:
    """What XNNPACK delegates in each graph, as measured at export: ops it leaves to TFLite's kernels split the
    graph into partitions and run on slower code paths."""
    notes = []
    for name, spec in meta.graphs.items():
        x = (spec.quantization or {}).get("xnnpack")
        if not x:
            continue
        note = (f"XNNPACK runs {x['delegated']} of {x['ops']} ops of graph {name} in {x['partitions']} "
                f"partition(s)")
        if x["not_delegated"]:
            note += "; left to TFLite: " + ", ".join(f"{op} x{n}" for op, n in x["not_delegated"].items())
        notes.append(note)
    return notes


def bench_bundle(bundle: Bundle | str | Path, *, runs: int = 50, warmup: int = 10, runtime: str | None = None,
                 threads: int | None = None, reference: bool = True, weights: Path | None = None,
                 json_out: Path | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Median/p90/min latency of the artifact, of the FP32 PyTorch reference and of the artifact end to end
    (preprocess a 640x480 frame + infer + decode/NMS or argmax), plus the ratios between them."""
    from edgevision.predictor import Predictor
    from edgevision.runtime.base import open_runner

    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    meta = bundle.meta
    artifact = open_runner(bundle, runtime, threads)
    frame = render_scene(0, SceneSpec(size=E2E_FRAME)).image
    task = get_task(meta.task)
    custom = task.bench_calls(artifact, meta, frame)
    if custom is not None:
        fns: dict[str, Callable[[], object]] = dict(custom)
    else:
        predictor = Predictor(bundle, runner=artifact)
        batch = np.ascontiguousarray(prepare(frame, meta.imgsz, meta.preprocess.resize)[0][None])
        fns = {"artifact": lambda: task.infer(artifact, batch), "end_to_end": lambda: predictor.predict(frame)}
    notes = []
    from edgevision.check.reference import reference_runner, torch_available

    if reference and not torch_available():
        reference = False
        notes.append("PyTorch is not installed here: no reference timing")
    if reference:
        ref = reference_runner(bundle, weights, artifact.threads)
        fns["pytorch_fp32"] = task.bench_calls(ref, meta, frame)["artifact"] if custom is not None else \
            (lambda: task.infer(ref, batch))
    times = interleaved(fns, runs, warmup, progress)
    stats = {k: latency_stats(v) for k, v in times.items()}
    peaks = measure_peaks(artifact.threads)
    throughput = share_of_peak(artifact_macs(bundle), stats["artifact"]["median_ms"], meta.precision, peaks)
    ratios = {"end_to_end_over_artifact": round(stats["end_to_end"]["median_ms"] / stats["artifact"]["median_ms"], 3)}
    if reference:
        ratios["speedup_vs_pytorch"] = round(stats["pytorch_fp32"]["median_ms"] / stats["artifact"]["median_ms"], 2)
    elif not notes:
        notes.append("no PyTorch reference measured (--no-reference)")
    notes += int8_notes(meta.precision, artifact.runtime, peaks)
    if artifact.runtime == "litert":
        notes += xnnpack_notes(meta)
    report = {
        "schema_version": BENCH_SCHEMA_VERSION, "kind": "bench", "created": now_iso(),
        "edgevision_version": __version__,
        "bundle": {"path": str(bundle.path), "model": meta.model, "target": meta.target, "precision": meta.precision,
                   "imgsz": meta.imgsz},
        "runtime": artifact.describe(), "cpu": cpu_info().to_json(), "peaks": peaks, "throughput": throughput,
        "runs": runs, "warmup": warmup, "latency": stats, "ratios": ratios,
        "end_to_end_frame": list(E2E_FRAME), "notes": notes,
    }
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(json_out), report)
    artifact.close()
    return report
