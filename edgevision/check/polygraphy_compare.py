"""`check --compare-with polygraphy`: NVIDIA Polygraphy's comparator over the bundle's ONNX artifact.

Polygraphy runs the artifact itself: ONNX Runtime always, and on a Jetson that has built the engine, TensorRT
too, the pair ``polygraphy run model.onnx --trt --onnxrt`` would compare. The FP32 reference joins as a third
result set: the PyTorch model run on the bundle's golden inputs (or, without PyTorch, the golden outputs
stored at export, where they were stored whole). Each artifact runner is compared with the reference, and
TensorRT with ONNX Runtime, by Polygraphy's own ``SimpleCompareFunc`` on a per-precision tolerance.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from edgevision.bundle import Bundle
from edgevision.errors import BadInput, MissingDependency

REFERENCE = "pytorch-fp32"

# Median absolute/relative error an output may show and still pass, by precision. Polygraphy's own default
# (1e-5, element-wise) is for FP32 graph rewrites; quantized graphs are judged on the typical element instead.
# The INT8 figures sit above what the healthy jetson INT8 bundles show (median abs / rel error: detector
# 0.008 / 0.048, U-Net logits 0.20 / 0.034; benchmarks/RESULTS.md).
DEFAULT_TOLERANCES = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 1e-2), "int8": (0.05, 0.1)}


def _import_polygraphy():
    try:
        return (importlib.import_module("polygraphy.comparator"), importlib.import_module("polygraphy.backend.onnxrt"))
    except ImportError:
        raise MissingDependency("polygraphy", "jetson", "--compare-with polygraphy") from None


def _tensorrt_runner(bundle: Bundle, graph: str):
    """Polygraphy's TrtRunner over the graph's engine, when this machine can run it (a Jetson after
    build-engine); None elsewhere."""
    from edgevision.runtime.tensorrt import check_engine_tag, current_device_tag, engine_file, read_engine_tag

    if not (bundle.path / engine_file(graph)).is_file():
        return None
    try:
        trt_backend = importlib.import_module("polygraphy.backend.trt")
        import tensorrt  # noqa: F401
    except ImportError:
        return None
    check_engine_tag(read_engine_tag(bundle.path, (graph,)), current_device_tag(), bundle.path)
    engine = trt_backend.EngineFromBytes((bundle.path / engine_file(graph)).read_bytes())
    return trt_backend.TrtRunner(engine, name="tensorrt")


def _reference_outputs(bundle: Bundle, graph: str, inputs: dict[str, np.ndarray], stored: dict, use_torch: bool,
                       weights: Path | None, threads: int) -> list[dict[str, np.ndarray]] | None:
    """FP32 outputs per golden input of ``graph``, keyed by the artifact's output names."""
    spec = bundle.meta.graphs[graph]
    bound = {t.name: t.bound_name for t in spec.outputs}
    n = len(next(iter(inputs.values())))
    if use_torch:
        from edgevision.check.reference import reference_runner
        from edgevision.runtime.batches import run_in_batches

        outputs = run_in_batches(reference_runner(bundle, weights, threads), graph, inputs)
        return [{bound[k]: v[j : j + 1] for k, v in outputs.items()} for j in range(n)]
    if not all(t.name in stored for t in spec.outputs):  # segmentation maps are stored reduced: nothing whole
        return None
    return [{bound[t.name]: stored[t.name][i : i + 1].astype(np.float32) for t in spec.outputs} for i in range(n)]


def compare_with_polygraphy(bundle: Bundle, *, use_torch: bool, weights: Path | None = None, threads: int = 2,
                            atol: float | None = None, rtol: float | None = None) -> dict:
    """Run Polygraphy's comparator on every graph; returns the report section (``passed``, per pair and output:
    the share of inputs that passed and the worst max/median absolute error). Outputs of a bundle with more
    than one graph are named graph/output."""
    from edgevision.check.golden import load_golden

    meta = bundle.meta
    if not all(g.artifact.endswith(".onnx") for g in meta.graphs.values()):
        raise BadInput(f"{bundle.path}: --compare-with polygraphy compares ONNX artifacts (cpu and jetson "
                       f"bundles); this is a {meta.target} bundle")
    golden = load_golden(bundle)
    if golden is None or not set(meta.graphs) <= set(golden):
        raise BadInput(f"{bundle.path}: no golden inputs in the bundle; re-export it to compare with polygraphy")
    comparator, onnxrt = _import_polygraphy()
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR  # its per-run banners would drown check's own output
    default_atol, default_rtol = DEFAULT_TOLERANCES[meta.precision]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    func = comparator.CompareFunc.simple(atol=atol, rtol=rtol, check_error_stat="median")

    # The session edgevision's own runner would open: a jetson INT8 graph runs with Q/DQ unfused (TensorRT's exact
    # INT8), not with the host CPU's fused int8 kernels.
    from edgevision.runtime.onnxruntime import emulates_exact_int8, ort, session_options

    options = session_options(threads, exact_int8=emulates_exact_int8(bundle))
    comparisons, notes, runner_names, count = [], [], [], 0
    for graph, spec in meta.graphs.items():
        inputs = golden[graph]["inputs"]
        n = len(next(iter(inputs.values())))
        count = max(count, n)
        session = ort.InferenceSession(str(bundle.path / spec.artifact), options, providers=["CPUExecutionProvider"])
        runners = [onnxrt.OnnxrtRunner(session, name="onnxrt")]
        trt_runner = _tensorrt_runner(bundle, graph)
        if trt_runner is not None:
            runners.append(trt_runner)
        feeds = [{t.bound_name: inputs[t.name][i : i + 1] for t in spec.inputs} for i in range(n)]
        results = comparator.Comparator.run(runners, data_loader=feeds)
        reference = _reference_outputs(bundle, graph, inputs, golden[graph]["outputs"], use_torch, weights, threads)
        if reference is not None:
            iterations = [comparator.IterationResult(outputs={k: np.ascontiguousarray(v, np.float32)
                                                              for k, v in outs.items()}, runner_name=REFERENCE)
                          for outs in reference]
            with_reference = comparator.RunResults()
            with_reference.append((REFERENCE, iterations))
            for entry in results:
                with_reference.append(entry)
            results = with_reference
        elif not notes:
            notes.append("no FP32 reference here: no PyTorch reference, and the golden outputs are stored reduced")
        names = [name for name, _ in results]
        runner_names = names
        pairs = [(0, i) for i in range(1, len(names))]
        if "tensorrt" in names and "onnxrt" in names and reference is not None:
            pairs.append((names.index("onnxrt"), names.index("tensorrt")))
        if not pairs:
            raise BadInput(f"{bundle.path}: nothing to compare ONNX Runtime with here: install PyTorch "
                           f"('edgevision[export]') for the FP32 reference, or run on the Jetson after build-engine")
        accuracy = comparator.Comparator.compare_accuracy(results, comparisons=pairs, compare_func=func)
        accuracy = accuracy if hasattr(accuracy, "items") else accuracy[0]  # polygraphy >= 0.53 returns a list
        prefix = "" if len(meta.graphs) == 1 else f"{graph}/"
        for (a, b), per_iteration in accuracy.items():
            outputs = {}
            for t in spec.outputs:
                rows = [it[t.bound_name] for it in per_iteration if t.bound_name in it]
                outputs[prefix + t.name] = {
                    "passed_fraction": round(float(np.mean([bool(r) for r in rows])), 4),
                    "max_abs_error": float(max(r.max_absdiff for r in rows)),
                    "median_abs_error": float(np.median([r.median_absdiff for r in rows])),
                    "median_rel_error": float(np.median([r.median_reldiff for r in rows])),
                }
            comparisons.append({"graph": graph, "pair": [a, b],
                                "passed": all(v["passed_fraction"] == 1.0 for v in outputs.values()),
                                "outputs": outputs})
    return {
        "tool": "polygraphy",
        "runners": runner_names,
        "inputs": count,
        "tolerance": {"check_error_stat": "median", "atol": atol, "rtol": rtol},
        "comparisons": comparisons,
        "passed": all(c["passed"] for c in comparisons),
        "notes": notes,
    }


def polygraphy_failures(section: dict) -> list[dict]:
    """One failure per output and runner pair outside the tolerance, in check's failure format."""
    tol = section["tolerance"]
    failures = []
    for comp in section["comparisons"]:
        a, b = comp["pair"]
        for out, stats in comp["outputs"].items():
            if stats["passed_fraction"] < 1.0:
                failures.append({
                    "metric": f"polygraphy:{a}-vs-{b}:{out}", "artifact": stats["median_abs_error"],
                    "tolerance": {"median_abs_error": tol["atol"], "median_rel_error": tol["rtol"]},
                    "message": f"polygraphy: {b} vs {a} on '{out}' fails on {1 - stats['passed_fraction']:.0%} of "
                               f"the inputs (median abs error {stats['median_abs_error']:.3g}, rel "
                               f"{stats['median_rel_error']:.3g}); tolerance is abs {tol['atol']:g} or rel "
                               f"{tol['rtol']:g}"})
    return failures
