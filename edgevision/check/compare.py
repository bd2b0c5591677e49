"""`edgevision check`: an artifact against its FP32 PyTorch reference, gated by the recipe's tolerances."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgevision import __version__
from edgevision.bundle import Bundle, atomic_write_json, load_bundle, now_iso
from edgevision.check.evaluate import ModelIO, evaluate
from edgevision.check.int8_numerics import saturation_note
from edgevision.config import MetricTolerance, bundle_recipe
from edgevision.data.datasets import EvalSet, load_eval_set
from edgevision.errors import BadInput
from edgevision.hardware import cpu_info, rss_mb
from edgevision.models.registry import bundle_scene_size, get_variant
from edgevision.check.reference import reference_runner, torch_available
from edgevision.runtime.base import open_runner

REPORT_SCHEMA_VERSION = 1
REPORT_FILE = "report.json"


def _eval_set_for(bundle: Bundle, data: str | Path | None, recipe) -> tuple[EvalSet, list[str]]:
    meta = bundle.meta
    variant = get_variant(meta.model)
    notes = []
    eval_set = load_eval_set(data, scene_size=bundle_scene_size(meta), stride=variant.stride, task=meta.task,
                             labels=meta.labels, count=recipe.eval.count, seed=recipe.eval.seed)
    if data is None and (meta.random_weights or list(meta.labels) != list(variant.labels)):
        eval_set.labelled = False
        notes.append("random weights: agreement metrics only" if meta.random_weights
                     else "custom labels: the synthetic set has no ground truth for them; agreement metrics only")
    elif not eval_set.labelled:
        notes.append("unlabelled data: agreement metrics only")
    return eval_set, notes


def gate(values: dict[str, dict[str, float]], agreement: dict[str, float],
         tolerances: dict[str, MetricTolerance]) -> tuple[list[dict], list[str]]:
    """Failures (one dict per metric out of budget) and the metrics that could not be evaluated."""
    failures, skipped = [], []
    ref, art = values.get("reference", {}), values.get("artifact", {})
    for metric, tol in tolerances.items():
        if tol.max_drop is not None:
            if not (_finite(ref.get(metric)) and _finite(art.get(metric))):
                skipped.append(metric)
                continue
            drop = ref[metric] - art[metric]
            if drop > tol.max_drop + 1e-9:
                failures.append({"metric": metric, "reference": ref[metric], "artifact": art[metric],
                                 "delta": round(-drop, 3), "tolerance": {"max_drop": tol.max_drop},
                                 "message": f"{metric} dropped {points(drop, tol.max_drop)} points ({ref[metric]:.2f} "
                                            f"-> {art[metric]:.2f}); tolerance is a drop of {tol.max_drop:g}"})
        else:
            value = agreement.get(metric, art.get(metric))
            if not _finite(value):
                skipped.append(metric)
                continue
            if value < tol.min - 1e-9:
                failures.append({"metric": metric, "artifact": value, "delta": round(value - tol.min, 3),
                                 "tolerance": {"min": tol.min},
                                 "message": f"{metric} is {points(value, tol.min)}, {tol.min - value:.3g} points below its "
                                            f"floor of {tol.min:g}"})
    return failures, skipped


def points(value: float, limit: float) -> str:
    """``value`` with enough decimals to tell it from ``limit``: a drop of 1.503 against 1.5 must not print as
    "1.50"."""
    for decimals in (2, 3, 4, 6):
        if round(value, decimals) != round(limit, decimals) or abs(value - limit) >= 0.01:
            return f"{value:.{decimals}f}"
    return f"{value:.6f}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _clean(o: Any) -> Any:
    """NaN/inf are not JSON; report them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _memory_record(bundle: Bundle, runner, rss_before: float) -> dict:
    """What loading and running the artifact added to this process's memory, against the profile's budget.
    Measured after the golden inputs ran (or one input, without golden data), before PyTorch is loaded."""
    from edgevision.config import get_target

    if bundle.meta.golden is None:  # nothing ran yet: one run of every graph on zeros
        for name, graph in bundle.meta.graphs.items():
            runner.run(name, {t.name: np.zeros(t.shape, t.dtype) for t in graph.inputs})
    try:
        budget = get_target(bundle.meta.target).memory_budget_mb
    except BadInput:
        budget = None
    return {"runtime_mb": round(rss_mb() - rss_before, 1), "process_mb": round(rss_mb(), 1), "budget_mb": budget}


def check_bundle(bundle: Bundle | str | Path, *, data: str | Path | None = None, runtime: str | None = None,
                 weights: Path | None = None, threads: int | None = None, json_out: Path | None = None,
                 reference: bool = True, baseline: Path | None = None, update_baseline: bool = False,
                 latency_tolerance: float = 0.10, latency_runs: int = 30, per_layer: bool = False,
                 compare_with: str | None = None, compare_atol: float | None = None,
                 compare_rtol: float | None = None, progress: Callable[[int, int], None] | None = None,
                 out_dir: Path | None = None) -> dict:
    """Compare the artifact with the FP32 reference; writes report.json and returns it.

    The report goes into the bundle directory; for a bundle read from an archive, beside the archive
    (``NAME.report.json``); into ``out_dir`` when given. ``report["written"]`` says where.

    With PyTorch available (and ``reference``), the FP32 model is rebuilt and both run on the eval set; the
    golden outputs stored in the bundle are compared too. Without PyTorch, or with ``reference=False``, the
    golden outputs are the reference. ``report["passed"]`` is False when a metric is outside the recipe's
    tolerance for the bundle's target and precision; the CLI turns that into exit code 1.
    ``compare_with="polygraphy"`` adds Polygraphy's comparator over an ONNX artifact (see polygraphy_compare).
    """
    from edgevision.check.baseline import apply_baseline, read_baseline
    from edgevision.check.golden import compare_golden, load_golden

    if baseline is not None and not update_baseline:
        read_baseline(baseline)  # a missing baseline is bad input: fail before the slow part
    if compare_with not in (None, "polygraphy"):
        raise BadInput(f"--compare-with '{compare_with}' is not supported; use --compare-with polygraphy")
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    meta = bundle.meta
    recipe = bundle_recipe(meta)
    tolerances = recipe.tolerances_for(meta.target_family, meta.precision)
    notes: list[str] = []
    use_torch = reference and torch_available()
    if reference and not use_torch:
        notes.append("PyTorch is not installed here: compared against the golden outputs stored at export")
    if not use_torch and data is not None:
        raise BadInput("--data needs the PyTorch reference (pip install 'edgevision[export]'); without it, check "
                       "compares against the golden set stored in the bundle")
    rss_before = rss_mb()
    artifact = open_runner(bundle, runtime, threads)
    saturation = saturation_note(artifact)
    if saturation:
        notes.append(saturation)
    golden = load_golden(bundle)
    golden_result = compare_golden(artifact, meta, golden, recipe) if golden else None
    memory = _memory_record(bundle, artifact, rss_before)
    if use_torch:
        eval_set, more = _eval_set_for(bundle, data, recipe)
        notes += more
        ref_runner = reference_runner(bundle, weights, artifact.threads, cache=True)
        total = len(eval_set)
        outcome = evaluate({"reference": ref_runner, "artifact": artifact}, eval_set,
                           ModelIO.from_bundle(meta, recipe),
                           progress=(lambda n: progress(n, total)) if progress else None)
        if ref_runner.cache_hits:
            notes.append(f"the FP32 PyTorch outputs of {ref_runner.cache_hits} of "
                         f"{ref_runner.cache_hits + ref_runner.cache_misses} reference calls came from the cache "
                         f"(same weights, code, torch and CPU); EDGEVISION_REFERENCE_CACHE=0 recomputes them")
        metrics: dict[str, Any] = dict(outcome.metrics)
        if outcome.metrics:
            metrics["delta"] = {k: round(outcome.metrics["artifact"][k] - v, 3)
                                for k, v in outcome.metrics["reference"].items()
                                if _finite(v) and _finite(outcome.metrics["artifact"].get(k))}
        agreement, similarity, worst = outcome.agreement, outcome.similarity, outcome.worst
        notes += outcome.notes
        data_info = {"description": eval_set.description, "images": outcome.images, "labelled": eval_set.labelled}
        gated = outcome.metrics
    else:
        if golden_result is None:
            raise BadInput(f"{bundle.path}: no PyTorch here and the bundle has no golden data; install "
                           f"'edgevision[export]' or re-export the bundle")
        metrics, gated, worst = {}, {}, []
        agreement, similarity = golden_result["agreement"], golden_result["output_similarity"]
        data_info = {"description": f"golden set stored in the bundle ({golden_result['samples']} inputs)",
                     "images": golden_result["samples"], "labelled": False}
    failures, skipped = gate(gated, agreement, tolerances)
    if memory.get("budget_mb") and memory["runtime_mb"] > memory["budget_mb"]:
        failures.append({"metric": "memory", "artifact": memory["runtime_mb"], "tolerance": {"max": memory["budget_mb"]},
                         "message": f"the artifact's runtime takes {memory['runtime_mb']:.0f} MB, over the "
                                    f"{memory['budget_mb']} MB memory_budget_mb of {meta.target}"})
    report = _clean({
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "check",
        "created": now_iso(),
        "edgevision_version": __version__,
        "bundle": {"path": str(bundle.path), "model": meta.model, "task": meta.task, "target": meta.target,
                   "precision": meta.precision,
                   "format_version": bundle.format_read,
                   "graphs": {name: {"artifact": g.artifact, "precision": g.precision}
                              for name, g in meta.graphs.items()},
                   "random_weights": meta.random_weights},
        "runtime": artifact.describe(),
        "cpu": cpu_info().to_json(),
        "memory": memory,
        "reference": "pytorch" if use_torch else "golden",
        "data": data_info,
        "metrics": metrics,
        "agreement": agreement,
        "output_similarity": similarity,
        "golden": golden_result,
        "tolerances": {k: v.model_dump(exclude_none=True) for k, v in tolerances.items()},
        "not_evaluated": skipped,
        "passed": not failures,
        "failures": failures,
        "worst_images": worst,
        "notes": notes,
    })
    if per_layer:
        from edgevision.check.per_layer import per_layer_report, plot_per_layer

        if not use_torch:
            raise BadInput("--per-layer needs the PyTorch reference: pip install 'edgevision[export]'")
        layers = per_layer_report(bundle, threads=artifact.threads)
        plot = bundle.output_name("per_layer.png", out_dir)
        plot_per_layer(layers, plot, f"{meta.model} {meta.target} {meta.precision}")
        layers["plot"] = str(plot)
        report["per_layer"] = _clean(layers)
    if compare_with is not None:
        from edgevision.check.polygraphy_compare import compare_with_polygraphy, polygraphy_failures

        section = compare_with_polygraphy(bundle, use_torch=use_torch, weights=weights, threads=artifact.threads,
                                          atol=compare_atol, rtol=compare_rtol)
        report["compare_with"] = _clean(section)
        report["failures"] = report["failures"] + polygraphy_failures(section)
        report["passed"] = not report["failures"]
    if baseline is not None:
        section = apply_baseline(bundle, report, Path(baseline), artifact, tolerances, update=update_baseline,
                                 latency_tolerance=latency_tolerance, runs=latency_runs)
        report["baseline"] = section
        report["failures"] = report["failures"] + section["failures"]
        report["passed"] = not report["failures"]
    report["written"] = str(bundle.output_name(REPORT_FILE, out_dir))
    atomic_write_json(Path(report["written"]), report)
    if json_out is not None:
        json_out = Path(json_out)
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(json_out, report)
    artifact.close()
    return report
