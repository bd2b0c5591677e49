"""The `edgevision` command line. Every verb is a thin layer over the Python API.

Exit codes (all verbs): 0 success, 1 accuracy regression (check), 2 bad input or usage, 3 any other failure.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgevision import __version__
from edgevision.errors import AccuracyRegression, EdgevisionError

app = typer.Typer(
    name="edgevision",
    help="Take small vision models from PyTorch to edge devices, and prove they still work there.\n\n"
         "Typical flow:  edgevision export fast-yolo-demo --target cpu  ->  edgevision check BUNDLE  ->  "
         "edgevision bench BUNDLE.  Start with `edgevision demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
if not out.is_terminal:  # pipes and CI logs: do not wrap tables at 80 columns
    out.width = 200
_state = {"debug": False}


class _LiveStderr(logging.Handler):
    """Writes to whatever sys.stderr is at emit time (pipeline threads may log after a caller swapped it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except (ValueError, OSError):
            pass


def _version(value: bool) -> None:
    if value:
        out.print(f"edgevision {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    _state["debug"] = debug
    logger = logging.getLogger("edgevision")
    if not any(isinstance(h, _LiveStderr) for h in logger.handlers):
        logger.addHandler(_LiveStderr())
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)


def _progress(transient: bool = True) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=transient, disable=not err.is_terminal)


def _step_printer(update):
    """Progress for a multi-step verb: the live bar on a terminal; without one (CI logs, pipes), one line per
    step on stdout with the time since the start, so a long export is never silent (stderr stays for warnings
    and the one-line error)."""
    if err.is_terminal:
        return update
    import time

    start = time.monotonic()

    def step(message: str) -> None:
        out.print(f"[{time.monotonic() - start:6.1f} s] {message}", soft_wrap=True)

    return step


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if v == 0 or abs(v) >= 0.01 else f"{v:.2e}"  # a KL divergence is far below 0.01
    return str(v)


# --------------------------------------------------------------------------------------------------- models
@app.command(help="List the registered model variants: name, task, input size, and whether weights ship with "
                  "edgevision.\n\nExample:  edgevision models")
def models() -> None:
    from edgevision.models.registry import list_variants

    table = Table("name", "task", "input", "weights", "summary", box=None, pad_edge=False)
    for v in list_variants():
        table.add_row(v.name, v.task, f"{v.imgsz}x{v.imgsz}", "bundled" if v.has_weights else "--weights",
                      v.summary)
    out.print(table)


# -------------------------------------------------------------------------------------------------- targets
@app.command(help="List the device profiles (targets/*.yaml).\n\n--target accepts a profile name or a family "
                  "name, which picks that family's default profile: cpu -> cpu, intel-npu -> "
                  "intel-core-ultra-npu, rpi -> raspberry-pi-5, jetson -> jetson-orin-nano.\n\n"
                  "Example:  edgevision targets")
def targets() -> None:
    from edgevision.config import FAMILY_DEFAULT_PROFILE, target_profiles

    aliases = {v: k for k, v in FAMILY_DEFAULT_PROFILE.items()}
    table = Table("profile", "family", "alias", "runtimes", "precisions", "threads", "description", box=None,
                  pad_edge=False)
    for p in target_profiles().values():
        table.add_row(p.name, p.family, aliases.get(p.name, ""), ",".join(p.runtimes), ",".join(p.precisions),
                      str(p.threads), p.description)
    out.print(table)


# --------------------------------------------------------------------------------------------------- export
@app.command(help="Export a model to a bundle (a directory: artifact + edgevision.json) for a target.\n\n"
                  "Examples:\n\n"
                  "  edgevision export fast-yolo-demo --target cpu --precision int8\n\n"
                  "  edgevision export mobile-unet --target intel-npu --out my-bundle --force\n\n"
                  "  edgevision export fast-yolo --weights yolo.pt --labels voc.names --calib photos/\n\n"
                  "  edgevision export fast-yolo --random-weights --target intel-npu   # speed tests\n\n"
                  "  edgevision export fast-yolo-demo --target rpi --max-drop 0.5      # accuracy-controlled INT8\n\n"
                  "  edgevision export deit-tiny --weights deit_tiny_patch16_224.safetensors --target intel-npu\n\n"
                  "  edgevision export deit-tiny-demo --target jetson --precision fp16  # ViTs: FP16 is often as fast")
def export(
    model: Annotated[str, typer.Argument(help="Registered variant, see `edgevision models`.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Profile or family name, see `edgevision targets`.")] = "cpu",
    precision: Annotated[str, typer.Option("--precision", "-p", help="fp32, fp16 or int8.")] = "int8",
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle directory to write "
                                                    "[default: bundles/<model>-<target>-<precision>].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out, once the new bundle is "
                                        "complete.")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", "-w", help="PyTorch state_dict of this model "
                                                    "[default: the variant's bundled weights].")] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Folder of calibration images for int8 "
                                                  "[default: the bundled calibration set].")] = None,
    imgsz: Annotated[Optional[int], typer.Option("--imgsz", help="Square input size, a multiple of the "
                                                 "model's stride [default: the variant's].")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Text file, one class name a line; also "
                                                   "sets the class count for --weights.")] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Random init, for speed benchmarks; "
                                                 "check then reports agreement only.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --random-weights.")] = 0,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Leave the batch dimension dynamic "
                                                "(static by default).")] = False,
    archive: Annotated[bool, typer.Option("--archive", help="Also write BUNDLE.tar.gz, one file to copy to the "
                                          "device (check, bench and run take it directly).")] = False,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", min=0, help="INT8 accuracy budget in points "
                                                      "of the recipe's primary metric: layers that hurt most "
                                                      "move back to float until the drop fits (exit 1, best "
                                                      "bundle kept, if it never does).")] = None,
    max_float_layers: Annotated[int, typer.Option("--max-float-layers", min=0, help="Layer limit for "
                                                  "--max-drop: no bundle keeps more layers in float (an NNCF "
                                                  "result over it is refused).")] = 6,
    golden: Annotated[Optional[int], typer.Option("--golden", min=0, help="Inputs whose FP32 outputs the bundle "
                                                  "stores, so that `check` works on a device without PyTorch "
                                                  "[default: 32]; 0 stores none (a 1024 px tracker takes "
                                                  "minutes for them).")] = None,
) -> None:
    from edgevision.export import export_bundle

    with _progress() as bar:
        task = bar.add_task("export", total=None)
        step = _step_printer(lambda msg: bar.update(task, description=msg))
        bundle = export_bundle(model, target, precision, out_dir, weights=weights, calib=calib, imgsz=imgsz,
                               labels=labels, random_weights=random_weights, seed=seed, force=force,
                               dynamic_batch=dynamic_batch, max_drop=max_drop,
                               max_float_layers=max_float_layers, golden=golden, progress=step)
    m = bundle.meta
    formats = sorted({g.artifact_format for g in m.graphs.values()})
    out.print(f"bundle: {bundle.path}  ({m.model}, {m.target}, {m.precision}, {', '.join(formats)}, "
              f"{m.imgsz}x{m.imgsz})")
    if len(m.graphs) > 1:
        for name, g in m.graphs.items():
            out.print(f"  graph {name}: {g.artifact} ({g.precision}; in: {', '.join(g.input_names)}; "
                      f"out: {', '.join(g.output_names)})")
    if m.reference and m.reference.get("metrics"):
        out.print("FP32 reference: " + ", ".join(f"{k} {_fmt(v)}" for k, v in m.reference["metrics"].items()))
    control = next(((g.quantization or {}).get("accuracy_control") for g in m.graphs.values()
                    if (g.quantization or {}).get("accuracy_control")), None)
    if control:
        for i, step in enumerate(control["steps"]):
            refused = "" if step.get("within_limit", True) else " [over --max-float-layers, not kept]"
            layers = step["float_layers"]
            shown = ", ".join(layers[:8]) + (f", ... ({len(layers) - 8} more)" if len(layers) > 8 else "")
            out.print(f"  step {i}: {control['metric']} {step['metric']:.2f} (drop {step['drop']:.2f}) with "
                      f"{len(layers)} float layer(s) {shown}{refused}")
        out.print(f"budget {control['max_drop']:g}: {'met' if control['budget_met'] else 'NOT met'}")
    if archive:
        from edgevision.bundle import pack_bundle

        out.print(f"archive: {pack_bundle(bundle.path, force=force)}")
    out.print(f"next: edgevision check {bundle.path}")


# ----------------------------------------------------------------------------------------------------- pack
@app.command(help="Pack a bundle into one .tar.gz for the device; check, bench and run accept the archive "
                  "directly.\n\nExample:  edgevision pack bundles/fast-yolo-demo-rpi-int8   # -> "
                  "bundles/fast-yolo-demo-rpi-int8.tar.gz")
def pack(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Archive path [default: "
                                                     "BUNDLE.tar.gz].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing archive.")] = False,
) -> None:
    from edgevision.bundle import pack_bundle

    out.print(f"archive: {pack_bundle(bundle, out_file, force)}")


# --------------------------------------------------------------------------------------------- build-engine
@app.command("build-engine", help="On the Jetson: build the TensorRT engine of a jetson bundle from its ONNX "
                                  "(one engine per graph: model.engine, or image_encoder.engine and so on), "
                                  "with the precision flags, a workspace limit and a timing cache kept in "
                                  "the bundle (DLA with GPU fallback where the profile has DLA cores). Needs "
                                  "TensorRT 10 (JetPack 6) and cuda-python.\n\n"
                                  "An archive is never changed: the bundle with its engine goes to a new archive "
                                  "beside it (NAME.engine.tar.gz), or to --out DIR.\n\n"
                                  "Example:  edgevision build-engine fast-yolo-demo-jetson-int8.tar.gz   # -> "
                                  "fast-yolo-demo-jetson-int8.engine.tar.gz")
def build_engine_cmd(
    bundle: Annotated[Path, typer.Argument(help="Jetson bundle directory or archive.")],
    workspace_mb: Annotated[int, typer.Option("--workspace-mb", min=64, help="Builder workspace limit.")] = 1024,
    dla_core: Annotated[Optional[int], typer.Option("--dla-core", help="DLA core to use [default: 0 when the "
                                                    "profile has DLA cores and precision is not fp32].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild an existing engine, or replace an existing "
                                        "output.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the bundle with its engine here "
                                                    "[default: in place for a directory; for an archive, "
                                                    "NAME.engine.tar.gz beside it].")] = None,
) -> None:
    from edgevision.export.tensorrt_engine import build_engine

    with _progress() as bar:
        bar.add_task("building the TensorRT engine (minutes on a Jetson)", total=None)
        tag = build_engine(bundle, workspace_mb=workspace_mb, dla_core=dla_core, force=force, out_dir=out_dir)
    engines = ", ".join(e["file"] for e in tag.get("engines", {}).values())
    out.print(f"engine{'s' if len(tag.get('engines', {})) > 1 else ''} built ({engines}): TensorRT "
              f"{tag['tensorrt']} on {tag['gpu']} ({tag['precision']}"
              f"{', DLA core ' + str(tag['dla_core']) if tag['dla_core'] is not None else ''})")
    out.print(f"written: {tag['written']}")


# ---------------------------------------------------------------------------------------------------- check
@app.command(help="Compare a bundle's artifact with its FP32 PyTorch reference and gate on the recipe's "
                  "tolerances. Writes report.json into the bundle (for an archive: NAME.report.json beside it; --out DIR "
                  "elsewhere). Exit 1 when a metric is out of budget. "
                  "Without PyTorch (on a device) it compares against the golden outputs stored in the bundle.\n\n"
                  "Examples:\n\n"
                  "  edgevision check bundles/fast-yolo-demo-cpu-int8\n\n"
                  "  edgevision check BUNDLE --baseline ci/baseline.json --update-baseline   # record\n\n"
                  "  edgevision check BUNDLE --baseline ci/baseline.json                     # gate\n\n"
                  "  edgevision check --matrix recipes/regression.yaml --report reports/ci --jobs 2\n\n"
                  "  edgevision check BUNDLE --data photos/              # unlabelled: agreement only\n\n"
                  "  edgevision check bundles/deit-tiny-demo-rpi-int8 --per-layer   # which layers lose the most\n\n"
                  "  edgevision check BUNDLE --data coco/val.json --json ci/check.json\n\n"
                  "  edgevision check BUNDLE --compare-with polygraphy   # NVIDIA Polygraphy's comparator too")
def check(
    bundle: Annotated[Optional[Path], typer.Argument(help="Bundle directory or .tar.gz archive.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="A folder of images (agreement metrics) or a "
                                                 "COCO .json (paths relative to it; categories matched by "
                                                 "name) [default: the synthetic eval set].")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report to this file.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write report.json (and per_layer.png) "
                                                    "into this directory instead of the bundle [default: the "
                                                    "bundle; for an archive, beside it].")] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="Runtime to use; must be allowed for the "
                                                   "bundle's target [default: the target's first].")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Reference checkpoint, if it moved since "
                                                    "export.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Inference threads [default: the "
                                                   "target profile's].")] = None,
    no_reference: Annotated[bool, typer.Option("--no-reference", help="Compare against the golden outputs "
                                               "stored in the bundle only, as on a device without PyTorch "
                                               "(automatic when PyTorch is not installed).")] = False,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Compare accuracy and latency with "
                                                     "this baseline JSON (exit 1 on a regression).")] = None,
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="Write or refresh --baseline "
                                                  "(only when the check passes its tolerances).")] = False,
    latency_tolerance: Annotated[float, typer.Option("--latency-tolerance", min=0, help="Allowed growth of "
                                                     "the normalised median latency.")] = 0.10,
    latency_runs: Annotated[int, typer.Option("--latency-runs", min=3, help="Runs for the baseline latency "
                                              "median.")] = 30,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Rank the artifact's layers by the error each "
                                            "adds (SQNR vs FP32); writes per_layer.png beside report.json.")] = False,
    matrix: Annotated[Optional[Path], typer.Option("--matrix", help="Run models x targets x precisions from a "
                                                   "YAML (e.g. recipes/regression.yaml) instead of one "
                                                   "bundle.")] = None,
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Where --matrix writes report.md, "
                                                       "report.html and junit.xml [default: "
                                                       "reports/<timestamp>/].")] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Parallel exports for --matrix (capped at the "
                                      "machine's cores).")] = 1,
    compare_with: Annotated[Optional[str], typer.Option("--compare-with", help="Also compare with NVIDIA "
                                                        "Polygraphy ('polygraphy'; ONNX bundles, pip install "
                                                        "'edgevision[jetson]'): its comparator runs the artifact "
                                                        "on ONNX Runtime (and TensorRT on a Jetson with a built "
                                                        "engine) against the FP32 reference on the golden "
                                                        "inputs.")] = None,
    compare_atol: Annotated[Optional[float], typer.Option("--compare-atol", min=0, help="--compare-with: "
                                                          "median absolute error allowed per output [default "
                                                          "by precision: fp32 1e-4, fp16 1e-2, int8 0.05].")] = None,
    compare_rtol: Annotated[Optional[float], typer.Option("--compare-rtol", min=0, help="--compare-with: "
                                                          "median relative error allowed per output (an output "
                                                          "passes within either) [default by precision: fp32 "
                                                          "1e-3, fp16 1e-2, int8 0.1].")] = None,
) -> None:
    from edgevision.check.compare import check_bundle

    if matrix is not None:
        _check_matrix(matrix, report_dir, jobs)
        return
    if bundle is None:
        raise typer.BadParameter("give a BUNDLE, or --matrix FILE")

    if update_baseline and baseline is None:
        raise typer.BadParameter("--update-baseline needs --baseline FILE")

    with _progress() as bar:
        task = bar.add_task("checking", total=None)
        report = check_bundle(bundle, data=data, runtime=runtime, weights=weights, threads=threads,
                              json_out=json_out, reference=not no_reference, baseline=baseline,
                              update_baseline=update_baseline, latency_tolerance=latency_tolerance,
                              latency_runs=latency_runs, per_layer=per_layer, compare_with=compare_with,
                              compare_atol=compare_atol, compare_rtol=compare_rtol, out_dir=out_dir,
                              progress=lambda n, total: bar.update(task, completed=n, total=total))
    print_check(report)
    if not report["passed"]:
        raise AccuracyRegression("; ".join(f["message"] for f in report["failures"]))


def _check_matrix(spec: Path, report_dir: Optional[Path], jobs: int) -> None:
    import os

    from edgevision.matrix import run_matrix

    with _progress(transient=False) as bar:
        tasks = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        summary = run_matrix(spec, report_dir, jobs=min(jobs, os.cpu_count() or 1), progress=progress)
    cells = f"{summary['cells']} cell" + ("" if summary["cells"] == 1 else "s")
    out.print(f"{cells}: {summary['passed']} passed, {summary['failed']} failed "
              f"({summary['exported']} exported, {summary['reused']} reused)")
    rd = Path(summary["report_dir"])
    out.print(f"report: {rd / 'report.md'}, {rd / 'report.html'}, {rd / 'junit.xml'}")
    if summary["failed"]:
        raise AccuracyRegression(f"{summary['failed']} of {summary['cells']} cells out of budget; see "
                                 f"{rd / 'report.md'}")


def print_check(report: dict) -> None:
    b = report["bundle"]
    out.print(f"{b['model']} on {b['target']} ({b['precision']}, {report['runtime']['runtime']} "
              f"{report['runtime']['device']}), {report['data']['description']}")
    m = report["metrics"]
    if m.get("reference"):
        table = Table("metric", "reference", "artifact", "delta", "tolerance", box=None, pad_edge=False)
        for k, ref in m["reference"].items():
            tol = report["tolerances"].get(k, {})
            table.add_row(k, _fmt(ref), _fmt(m["artifact"].get(k)), _fmt(m.get("delta", {}).get(k)),
                          f"drop <= {tol['max_drop']:g}" if "max_drop" in tol else "")
        out.print(table)
    for k, v in report["agreement"].items():
        tol = report["tolerances"].get(k, {})
        out.print(f"{k}: {_fmt(v)}" + (f"  (floor {tol['min']:g})" if "min" in tol else ""))
    for name, s in report["output_similarity"].items():
        out.print(f"output '{name}': cosine {s['cosine']:.5f}, max abs error {s['max_abs_error']:.4g}, "
                  f"SQNR {_fmt(s['sqnr_db'])} dB")
    golden = report.get("golden")
    if golden and report.get("reference") == "pytorch":
        g = ", ".join(f"{k} {_fmt(v)}" for k, v in golden["agreement"].items())
        out.print(f"golden set ({golden['samples']} inputs stored in the bundle): {g}")
    layers = report.get("per_layer")
    if layers:
        table = Table("rank", "layer", "added noise (ranked)", "op", "module", "SQNR dB", "SQNR drop dB", "cosine",
                      box=None, pad_edge=False)
        for i, x in enumerate(layers["top"], 1):
            table.add_row(str(i), x["name"], f"{x['added_noise']:.2e}", x["op_type"], x.get("scope") or "-",
                          _fmt(x["sqnr_db"]), _fmt(x["added_db"]) if x["added_db"] is not None else "exact input",
                          f"{x['cosine']:.5f}")
        out.print(f"per-layer error ({layers['samples']} inputs), ranked by the noise-to-signal power each layer "
                  f"adds (a drop in dB reads smaller where the input is already noisy), worst first:")
        out.print(table)
        if layers["keep_in_higher_precision"]:
            out.print("keep in higher precision: " + ", ".join(layers["keep_in_higher_precision"]))
        out.print(f"plot: {layers['plot']}")
    compared = report.get("compare_with")
    if compared:
        tol = compared["tolerance"]
        out.print(f"polygraphy ({compared['inputs']} golden inputs; median error within abs {tol['atol']:g} or "
                  f"rel {tol['rtol']:g}):")
        for comp in compared["comparisons"]:
            a, b_ = comp["pair"]
            for name, s in comp["outputs"].items():
                out.print(f"  {b_} vs {a}, '{name}': {'PASS' if s['passed_fraction'] == 1 else 'FAIL'} "
                          f"({s['passed_fraction']:.0%} of inputs), median abs {s['median_abs_error']:.3g}, "
                          f"rel {s['median_rel_error']:.3g}, max abs {s['max_abs_error']:.3g}")
        for note in compared["notes"]:
            out.print(f"  note: {note}")
    base = report.get("baseline")
    if base:
        lat = base["latency"]
        line = f"latency {lat['median_ms']:.2f} ms (normalised {lat['normalised']:.3f})"
        if "baseline_latency" in base:
            line += f" vs baseline {base['baseline_latency']['median_ms']:.2f} ms " \
                    f"(normalised {base['baseline_latency']['normalised']:.3f})"
        out.print(line + (f"; baseline written to {base['file']}" if base["updated"] else ""))
        if base.get("note"):
            out.print(f"note: {base['note']}")
    _print_machine(report)
    mem = report.get("memory")
    if mem:
        budget = f" (budget {mem['budget_mb']} MB)" if mem.get("budget_mb") else ""
        out.print(f"memory: the artifact's runtime took {mem['runtime_mb']:.0f} MB{budget}")
    for note in report["notes"]:
        out.print(f"note: {note}")
    out.print(f"report: {report.get('written') or Path(b['path']) / 'report.json'}")
    out.print("PASS" if report["passed"] else "FAIL")


# ---------------------------------------------------------------------------------------------------- bench
@app.command(help="Latency of the artifact and of the FP32 PyTorch reference, measured side by side in one "
                  "process (interleaved runs): median, p90 and min, the speed-up, and end-to-end latency on a "
                  "640x480 frame (preprocess + infer + decode/NMS).\n\n"
                  "Examples:\n\n"
                  "  edgevision bench bundles/fast-yolo-demo-cpu-int8\n\n"
                  "  edgevision bench BUNDLE --runs 200 --warmup 20 --json bench.json")
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory or .tar.gz archive.")],
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs of each.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 10,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the figures to this file.")] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="Runtime to use; must be allowed for the "
                                                   "bundle's target.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Inference threads (both sides).")] = None,
    no_reference: Annotated[bool, typer.Option("--no-reference", help="Skip PyTorch (e.g. on a device "
                                               "without it).")] = False,
) -> None:
    from edgevision.check.bench import bench_bundle

    with _progress() as bar:
        task = bar.add_task("benchmarking", total=runs)
        report = bench_bundle(bundle, runs=runs, warmup=warmup, runtime=runtime, threads=threads,
                              reference=not no_reference, json_out=json_out,
                              progress=lambda n, total: bar.update(task, completed=n))
    print_bench(report)


def print_bench(report: dict) -> None:
    b, rt = report["bundle"], report["runtime"]
    out.print(f"{b['model']} on {b['target']} ({b['precision']}, {rt['runtime']} {rt['device']}, "
              f"{rt['threads']} threads), {report['runs']} runs after {report['warmup']} warm-up")
    table = Table("", "median ms", "p90 ms", "min ms", box=None, pad_edge=False)
    names = {"artifact": "artifact", "pytorch_fp32": "PyTorch FP32", "end_to_end": "end to end (640x480)"}
    for k, s in report["latency"].items():
        table.add_row(names.get(k, k), f"{s['median_ms']:.2f}", f"{s['p90_ms']:.2f}", f"{s['min_ms']:.2f}")
    out.print(table)
    r = report["ratios"]
    if "speedup_vs_pytorch" in r:
        out.print(f"speed-up vs PyTorch: {r['speedup_vs_pytorch']:.2f}x")
    out.print(f"end to end / bare inference: {r['end_to_end_over_artifact']:.2f}")
    _print_machine(report)
    peaks = report.get("peaks", {})
    if "fp32" in peaks and "int8" in peaks:
        out.print(f"same-run GEMM peaks: FP32 {peaks['fp32']['gmac_per_s']:g} GMAC/s ({peaks['fp32']['runtime']}), "
                  f"INT8 {peaks['int8']['gmac_per_s']:g} GMAC/s ({peaks['int8']['runtime']})")
    t = report.get("throughput")
    if t:
        out.print(f"artifact: {t['gmac']:g} GMAC at {t['gmac_per_s']:g} GMAC/s = {t['share']:.0%} of the "
                  f"{t['peak'].upper()} peak")
    for note in report.get("notes", []):
        out.print(f"note: {note}")


def _print_machine(report: dict) -> None:
    """The CPU and the kernels that ran: ratios and INT8 rounding both depend on them."""
    from edgevision.hardware import cpu_line

    if report.get("cpu"):
        out.print(f"cpu: {cpu_line(report['cpu'])}")
    kernels = report.get("runtime", {}).get("kernels")
    if kernels:
        out.print(f"kernels: {kernels}")


# ------------------------------------------------------------------------------------------------------ run
@app.command(help="Distill a smaller image encoder for a promptable model from your own unlabelled images: the "
                  "student learns the teacher encoder's embeddings (MSE, as MobileSAM's decoupled distillation); "
                  "the teacher's prompt encoder and mask decoder are kept unchanged. The student may be narrower "
                  "(--dim), shallower (--depth) or take a smaller input (--imgsz); its embeddings are resized to "
                  "the decoder's grid. The training state is saved every 50 steps and on Ctrl-C (which also "
                  "writes the student so far); --resume continues.\n\n"
                  "Example:\n\n"
                  "  edgevision distill efficient-sam-vitt --weights efficient_sam_vitt.pt --data photos/ "
                  "--imgsz 512 --dim 96 --steps 4000 --out student.pt\n\n"
                  "  edgevision export efficient-sam-student --weights student.pt --target intel-npu")
def distill(
    teacher: Annotated[str, typer.Argument(help="The teacher: a promptable model (edgevision models).")],
    data: Annotated[Path, typer.Option("--data", help="A folder of images (no labels).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The student checkpoint to write.")],
    weights: Annotated[Optional[Path], typer.Option("--weights", help="The teacher's checkpoint [default: its "
                                                    "bundled weights].")] = None,
    imgsz: Annotated[Optional[int], typer.Option("--imgsz", min=16, help="The student's input size [default: "
                                                 "the teacher's].")] = None,
    dim: Annotated[int, typer.Option("--dim", min=16, help="The student encoder's width.")] = 96,
    depth: Annotated[int, typer.Option("--depth", min=1, help="The student encoder's blocks.")] = 6,
    heads: Annotated[int, typer.Option("--heads", min=1, help="The student encoder's attention heads.")] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps.")] = 2000,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per step.")] = 8,
    lr: Annotated[float, typer.Option("--lr", min=0, help="Peak learning rate (cosine decay).")] = 1e-3,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT.state.pt.")] = False,
    from_teacher: Annotated[bool, typer.Option("--init-from-teacher", help="Start the student's encoder from the "
                                               "teacher's: patch and position embeddings, neck, and --depth of "
                                               "its blocks, evenly spaced (needs the teacher's --dim and "
                                               "--heads). Ignored with --resume. At a smaller --imgsz, pair it "
                                               "with --own-grid: resized to the teacher's grid it did worse "
                                               "than a random start on the demo (RESULTS, session 31).")] = False,
    own_grid: Annotated[bool, typer.Option("--own-grid", help="Run the decoder at the student's own embedding "
                                           "grid (--imgsz / 16; masks 4x that grid) and learn the teacher's "
                                           "embeddings area-resized to it, instead of resizing the student's "
                                           "up to the teacher's grid.")] = False,
    teacher_imgsz: Annotated[Optional[int], typer.Option("--teacher-imgsz", min=16, help="Run the teacher at "
                                                         "this input size to make the targets [default: its "
                                                         "own]. With --own-grid and the student's --imgsz, the "
                                                         "student learns the teacher's own embeddings at that "
                                                         "size, which the decoder reads far better than a "
                                                         "resize of the full-size ones (RESULTS, session 32).")]
    = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgevision.distill import distill as run_distill

    columns = (TextColumn("distill"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TextColumn("{task.fields[rate]} img/s"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task("distill", total=steps, loss="-", rate="-")
        lines = {"last": 0.0}

        def on_step(s) -> None:
            bar.update(task, completed=s.step, loss=f"{s.loss:.4g}", rate=f"{s.images_per_s:.1f}")
            now = time.monotonic()
            if not err.is_terminal and (now - lines["last"] > 30 or s.step == s.steps):
                lines["last"] = now
                err.print(f"step {s.step}/{s.steps} loss {s.loss:.4g} ({s.images_per_s:.1f} img/s)")

        try:
            path = run_distill(teacher, data, out_file, teacher_weights=weights, img_size=imgsz, embed_dim=dim,
                               depth=depth, num_heads=heads, steps=steps, batch=batch, lr=lr, seed=seed,
                               resume=resume, from_teacher=from_teacher, own_grid=own_grid,
                               teacher_img_size=teacher_imgsz, on_step=on_step,
                               say=lambda m: err.print(m))
        except KeyboardInterrupt:
            _report_interrupt(f"interrupted; kept {out_file} (the student so far) and {out_file}.state.pt "
                              f"(--resume continues)")
    out.print(f"wrote {path}; export it with: edgevision export efficient-sam-student --weights {path}")


@app.command(help="Run a bundle live: a camera, video file, stream, image folder, GStreamer pipeline or the Pi "
                  "camera in; overlays, video, MJPEG or JSONL out. Capture, inference, NMS and rendering run "
                  "as overlapped stages. Prints frames read/processed/dropped, FPS and per-stage latency on "
                  "exit (Ctrl-C stops cleanly).\n\n"
                  "Sources: 0 | /dev/video0 | clip.mp4 | rtsp://host/stream | http://... | photos/ | "
                  "'photos/*.jpg' | gst:<pipeline> | gst:jetson-csi (nvarguscamerasrc preset) | picamera2:\n\n"
                  "Examples:\n\n"
                  "  edgevision run bundles/fast-yolo-demo-cpu-int8 --source clip.mp4 --out annotated.mp4\n\n"
                  "  edgevision run BUNDLE --source 0 --serve 8080          # http://127.0.0.1:8080/\n\n"
                  "  edgevision run BUNDLE --source gst:jetson-csi --show --stats stats.json\n\n"
                  "  edgevision run bundles/deit-tiny-demo-cpu-int8 --source photos/ --jsonl classes.jsonl   # top-3\n\n"
                  "Promptable segmentation (a SAM-style bundle) needs prompts, in source-image pixels:\n\n"
                  "  edgevision run SAM_BUNDLE --source photo.jpg --point 320,240 --point 100,80,0 --out masks.mp4\n\n"
                  "  edgevision run SAM_BUNDLE --source clip.mp4 --box 50,60,300,400 --box 400,50,600,300\n\n"
                  "  edgevision run SAM_BUNDLE --source 0 --prompts-from bundles/fast-yolo-demo-cpu-int8   # detect, "
                  "then segment each box\n\n"
                  "A tracker (SAM 2-style bundle) follows objects through the stream, with memory; each --box (or the "
                  "points) starts one object on the first frame, or on --prompt-frame N:\n\n"
                  "  edgevision run TRACKER --source clip.mp4 --box 50,60,300,400 --box 400,50,600,300 --jsonl "
                  "tracks.jsonl\n\n"
                  "  edgevision run TRACKER --source rtsp://127.0.0.1:8554/cam --prompts-from DETECTOR --classes "
                  "person,dog --max-objects 4")
def run(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory or .tar.gz archive.")],
    source: Annotated[str, typer.Option("--source", "-s", help="What to read (see above).")],
    show: Annotated[bool, typer.Option("--show", help="Open a window (needs a display and OpenCV with GUI "
                                       "support).")] = False,
    out_video: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the annotated video (.mp4).")] = None,
    serve: Annotated[Optional[int], typer.Option("--serve", help="Serve an MJPEG stream on this port "
                                                 "(1-65535).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address for --serve.")] = "127.0.0.1",
    jsonl: Annotated[Optional[Path], typer.Option("--jsonl", help="Per-frame results, one JSON a line.")] = None,
    stats: Annotated[Optional[Path], typer.Option("--stats", help="Write the end-of-run summary as JSON.")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Stop after reading N "
                                                      "frames.")] = None,
    realtime: Annotated[Optional[bool], typer.Option("--realtime/--every-frame", help="Drop frames to stay live "
                                                     "(default for cameras and streams) or process every frame "
                                                     "(default for files and folders).",
                                                     show_default=False)] = None,
    conf: Annotated[Optional[float], typer.Option("--conf", min=0, max=1, help="Detection score threshold "
                                                  "[default: the recipe's].")] = None,
    iou: Annotated[Optional[float], typer.Option("--iou", min=0, max=1, help="NMS IoU threshold [default: the "
                                                 "recipe's].")] = None,
    max_reconnects: Annotated[int, typer.Option("--max-reconnects", min=0, help="Reopen a lost live source this "
                                                "many times before giving up (exit 3).")] = 5,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="Runtime to use; must be allowed for the "
                                                   "bundle's target.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Inference threads [default: the target "
                                                   "profile's pipeline split].")] = None,
    point: Annotated[Optional[list[str]], typer.Option("--point", help="Promptable bundles: a point x,y[,label] "
                                                       "(label 1 foreground, the default, or 0 background). All "
                                                       "points form one prompt, with the box if there is one; at "
                                                       "most 6 slots, a box taking 2.")] = None,
    box: Annotated[Optional[list[str]], typer.Option("--box", help="Promptable bundles and trackers: a box x0,y0,x1,y1. Several "
                                                     "boxes are several prompts, one mask (or tracked object) each.")] = None,
    prompts_from: Annotated[Optional[Path], typer.Option("--prompts-from", help="Promptable bundles: a detector "
                                                         "bundle run first on each frame; each detection box "
                                                         "becomes a box prompt (up to 16, best first). "
                                                         "Trackers: a detection that overlaps no live track starts "
                                                         "one.")] = None,
    prompt_frame: Annotated[int, typer.Option("--prompt-frame", min=0, help="Trackers: the frame (counting from 0 "
                                              "among the frames processed) where --box/--point start their "
                                              "objects.")] = 0,
    classes: Annotated[Optional[list[str]], typer.Option("--classes", help="Trackers with --prompts-from: only "
                                                         "detections of these labels start tracks (names, "
                                                         "comma-separated or repeated).")] = None,
    max_objects: Annotated[int, typer.Option("--max-objects", min=1, help="Trackers with --prompts-from: at most "
                                             "this many live tracks.")] = 8,
    lost_after: Annotated[int, typer.Option("--lost-after", min=1, help="Trackers with --prompts-from: end a track "
                                            "whose object score stays negative this many frames in a row.")] = 30,
) -> None:
    from edgevision.pipeline.runner import run_pipeline

    summary = run_pipeline(bundle, source, show=show, out_video=out_video, serve=serve, host=host, jsonl=jsonl,
                           stats=stats, max_frames=max_frames, realtime=realtime, conf=conf, iou=iou,
                           max_reconnects=max_reconnects, runtime=runtime, threads=threads, points=point or (),
                           boxes=box or (), prompts_from=prompts_from, prompt_frame=prompt_frame,
                           classes=classes or (), max_objects=max_objects, lost_after=lost_after)
    print_run(summary)
    if summary.get("interrupted"):
        kept = [f"{p} ({summary['frames_processed']} frames)" for p in (out_video, jsonl) if p is not None]
        kept += [str(stats)] if stats is not None else []
        _report_interrupt("interrupted; " + (f"kept {', '.join(kept)}" if kept else "nothing was written"))


def print_run(s: dict) -> None:
    out.print(f"{s['source']}: read {s['frames_read']}, processed {s['frames_processed']}, dropped "
              f"{s['frames_dropped']}, corrupt {s['frames_corrupt']}, reconnects {s['reconnects']}")
    out.print(f"end-to-end FPS: {_fmt(s['fps'])} over {s['duration_s']:.2f} s")
    table = Table("stage", "p50 ms", "p90 ms", "p99 ms", box=None, pad_edge=False)
    for stage, h in s["latency_ms"].items():
        if h.get("count"):
            name = "capture -> output" if stage == "end_to_end" else stage
            table.add_row(name, f"{h['p50_ms']:.2f}", f"{h['p90_ms']:.2f}", f"{h['p99_ms']:.2f}")
    out.print(table)


# ----------------------------------------------------------------------------------------------------- demo
@app.command(help="The whole job on built-in data, no camera and no download: export the demo detector, "
                  "the U-Net, the DeiT-Tiny classifier, the promptable segmenter and the video tracker to INT8 for "
                  "this host, check each against FP32 PyTorch, run detection, segmentation, promptable "
                  "segmentation and tracking (both started by the detector's boxes) on a generated video and "
                  "detection on the bundled real photos, and print a summary.\n\n"
                  "Example:  edgevision demo --out demo-output")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where everything is written.")] = Path("demo-output"),
    target: Annotated[str, typer.Option("--target", "-t", help="Target to export for.")] = "cpu",
    frames: Annotated[int, typer.Option("--frames", min=1, help="Length of the generated video.")] = 90,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs per latency figure.")] = 30,
) -> None:
    from edgevision.demo import run_demo

    summary = run_demo(out_dir, target=target, frames=frames, runs=runs, say=lambda m: err.print(m))
    print_demo(summary)
    if not all(r["passed"] for r in summary["rows"]):
        raise AccuracyRegression("an exported model is outside its accuracy budget (see the table above)")


def print_demo(summary: dict) -> None:
    from edgevision.check.compare import points

    table = Table("model", "target", "precision", "metric", "reference", "artifact", "delta", "budget", "ref ms",
                  "artifact ms", "speed-up", "check", box=None, pad_edge=False)
    for row in summary["rows"]:
        for i, g in enumerate(row["gated"]):  # every gated metric, the failing one marked
            first = i == 0
            if "max_drop" in g:
                delta = points(g["delta"], -g["max_drop"]) if g["delta"] is not None else "-"
                budget = f"drop <= {g['max_drop']:g}"
            else:
                delta, budget = "", f">= {g['min']:g}"
            table.add_row(row["model"] if first else "", row["target"] if first else "", row["precision"] if first
                          else "", g["metric"], _fmt(g.get("reference")), _fmt(g["artifact"]), delta, budget,
                          _fmt(row["reference_ms"]) if first else "", _fmt(row["artifact_ms"]) if first else "",
                          f"{row['speedup']:.1f}x" if first else "", "pass" if g["passed"] else "FAIL <-")
    out.print(table)
    video = summary["video"]
    vs = video["detection_vs_truth"]
    out.print(f"generated video ({video['frames']} frames): detector mAP@0.5 {_fmt(vs['map50'])} against the exact "
              f"boxes; pipeline " + ", ".join(f"{k} {_fmt(v['fps'])} FPS" for k, v in video["pipeline"].items()))
    if "prompted_masks" in video:
        pm = video["prompted_masks"]
        out.print(f"promptable segmentation, prompted by the detector's boxes: {_fmt(pm['masks_per_frame'])} masks per "
                  f"frame (the video has {_fmt(pm['objects_in_truth_per_frame'])} objects per frame), "
                  f"{_fmt(pm['on_object'])} % of them on a true object (mask extent IoU >= 0.5)")
    if "tracks" in video:
        t = video["tracks"]
        out.print(f"tracking, started by the detector's boxes: {t['started']} tracks, {_fmt(t['masks_per_frame'])} "
                  f"present per frame (the video has {_fmt(t['objects_in_truth_per_frame'])} objects per frame), "
                  f"{_fmt(t['on_object'])} % of them on a true object (mask extent IoU >= 0.5)")
    found = sum(len(p["reference_detections"]) for p in summary["photos"])
    kept = sum(p["kept"] for p in summary["photos"])
    agreement = f"{100 * kept / found:.0f} %" if found else "-"
    out.print(f"real photos ({len(summary['photos'])}): the INT8 artifact reproduced {kept} of the FP32 reference's "
              f"{found} detections (agreement {agreement}; boxes drawn green for FP32, magenta for INT8; the demo "
              f"detector knows only synthetic shapes, so what it finds on photos matters less than that both agree)")
    out.print("written:")
    for what, path in summary["written"].items():
        out.print(f"  {what}: {path}")


# ----------------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps exceptions to the documented exit codes."""
    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    try:
        # Typer returns 130 (rather than raising) when Ctrl-C interrupts a command outside standalone mode
        if app(args=argv, standalone_mode=False, prog_name="edgevision") == 130:
            return _interrupted(args)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return _interrupted(args)
    except typer.TyperException as e:  # usage errors: unknown option, missing argument, bad value
        e.show()
        return 2
    except EdgevisionError as e:
        if debug:
            traceback.print_exc()
        label = "accuracy regression" if isinstance(e, AccuracyRegression) else "error"
        _stderr(f"{label}: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception as e:  # anything unexpected: one line, exit 3
        if debug:
            traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        _stderr(f"error: {type(e).__name__}: {first} (run with --debug for the traceback)")
        return 3
    return 0


def console() -> None:
    """The ``edgevision`` command and ``python -m edgevision``: exit with main()'s code.

    After Ctrl-C the process ends at once with ``os._exit``: a normal interpreter shutdown sometimes killed
    itself with SIGINT anyway (exit -2 instead of 130, seen when the interrupt hit NNCF's quantization), and
    scripts must see 130. Everything was already cleaned up while the interrupt unwound."""
    code = main()
    if code == 130:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


_interrupt_reported = False  # a verb said what it kept when Ctrl-C stopped it


def _report_interrupt(message: str) -> None:
    """A verb that keeps something on Ctrl-C says what, once, and exits 130; the entry point adds nothing."""
    global _interrupt_reported
    _interrupt_reported = True
    _stderr(message)
    raise typer.Exit(130)


def _interrupted(args: list[str]) -> int:
    """Ctrl-C: exit 130 and say what is left. Every verb writes its outputs atomically at the end, so an
    interrupted one leaves nothing; the demo keeps the steps it finished (each written atomically)."""
    global _interrupt_reported
    if _interrupt_reported:
        _interrupt_reported = False
    elif "demo" in args:
        _stderr("interrupted; the demo steps that finished are kept in its output folder")
    else:
        _stderr("interrupted; nothing was written")
    return 130


def _stderr(line: str) -> None:
    """Errors are one unwrapped line, whatever the terminal width."""
    sys.stderr.write(line.replace("\n", " ") + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
