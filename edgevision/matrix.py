"""`edgevision check --matrix recipes/regression.yaml`: models x targets x precisions, exported when missing,
checked, timed, and written up as one report (report.md, a self-contained report.html, junit.xml).

Bundles are reused when up to date: each carries a key hashed from the weights, the calibration set, the
recipe and the toolchain versions, so a changed input re-exports only what it affects.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgevision.hardware import cpu_info
from edgevision.bundle import load_bundle, update_meta
from edgevision.config import Precision, _load_yaml, bundle_recipe, get_target
from edgevision.errors import BadInput
from edgevision.models.registry import get_variant
from edgevision.resources import resource_dir

TOOLCHAIN_PACKAGES = ("edgevision", "torch", "onnx", "onnxruntime", "openvino", "nncf", "litert-torch")


class MatrixSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    precisions: list[Precision] = Field(min_length=1)
    bundles_dir: str = "bundles/regression"
    bench_runs: int = Field(20, ge=1)
    per_layer: bool = True


def _dir_hash(h, root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())


def bundle_key(model: str, target: str, precision: str) -> str:
    """What a bundle depends on: weights, calibration set, recipe, target profile and toolchain versions."""
    variant = get_variant(model)
    h = hashlib.sha256(f"{model}|{get_target(target).name}|{precision}".encode())
    if variant.weights_path and variant.weights_path.is_file():
        h.update(variant.weights_path.read_bytes())
    _dir_hash(h, resource_dir("calibration"))
    for name in (f"{model}.yaml", f"default-{variant.task}.yaml"):
        path = resource_dir("recipes") / name
        if path.is_file():
            h.update(path.read_bytes())
            break
    h.update((resource_dir("targets") / f"{get_target(target).name}.yaml").read_bytes())
    for pkg in TOOLCHAIN_PACKAGES:
        try:
            h.update(f"{pkg}={importlib.metadata.version(pkg)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{pkg}=-".encode())
    return h.hexdigest()[:20]


def _export_job(model: str, target: str, precision: str, out: str, key: str) -> str:
    from edgevision.export import export_bundle

    bundle = export_bundle(model, target, precision, Path(out), force=True)
    update_meta(bundle, matrix_key=key)
    return out


def run_matrix(spec_path: Path, report_dir: Path | None = None, *, jobs: int = 1,
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    from edgevision.check.bench import bench_bundle
    from edgevision.check.compare import check_bundle
    from edgevision.check.report import write_reports

    spec_path = Path(spec_path)
    if not spec_path.is_file() and (resource_dir("recipes") / spec_path.name).is_file():
        spec_path = resource_dir("recipes") / spec_path.name  # the shipped recipes/ when run outside the repo
    if not spec_path.is_file():
        raise BadInput(f"--matrix {spec_path}: no such file")
    spec = _load_yaml(spec_path, MatrixSpec)
    for m in spec.models:
        get_variant(m)
    cells = []
    for m in spec.models:
        for t in spec.targets:
            profile = get_target(t)
            for p in spec.precisions:
                if p in profile.precisions:
                    cells.append((m, t, p))
    if not cells:
        raise BadInput(f"{spec_path}: no model x target x precision combination is possible")
    root = Path(spec.bundles_dir)
    report_dir = Path(report_dir) if report_dir else Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    say = progress or (lambda *_: None)

    # 1. export what is missing or stale (independent exports in parallel)
    todo, reused = [], 0
    keys = {}
    for m, t, p in cells:
        out = root / f"{m}-{t}-{p}"
        keys[(m, t, p)] = key = bundle_key(m, t, p)
        try:
            if load_bundle(out).meta.model_extra.get("matrix_key") == key:
                reused += 1
                continue
        except BadInput:
            pass
        todo.append((m, t, p, str(out), key))
    done = 0
    say("export", done, len(todo))
    if todo:
        if jobs > 1:
            # spawn, not fork: forking a process whose runtimes already started thread pools can deadlock
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_export_job, *job) for job in todo]
                for f in as_completed(futures):
                    f.result()
                    done += 1
                    say("export", done, len(todo))
        else:
            for job in todo:
                _export_job(*job)
                done += 1
                say("export", done, len(todo))

    # 2. check, time and (optionally) rank layers, cell by cell
    rows = []
    for i, (m, t, p) in enumerate(cells):
        say("check", i, len(cells))
        bundle = load_bundle(root / f"{m}-{t}-{p}")
        report = check_bundle(bundle, per_layer=spec.per_layer and p == "int8")
        speed = bench_bundle(bundle, runs=spec.bench_runs, warmup=3)
        metric = bundle_recipe(bundle.meta).primary_metric
        rows.append({"model": m, "target": t, "profile": bundle.meta.target, "precision": p,
                     "bundle": str(bundle.path), "metric": metric, "report": report, "bench": speed})
    say("check", len(cells), len(cells))
    summary = {"schema_version": 1, "kind": "matrix", "spec": str(spec_path), "cells": len(cells),
               "cpu": cpu_info().to_json(), "exported": len(todo), "reused": reused,
               "passed": sum(r["report"]["passed"] for r in rows), "failed": sum(not r["report"]["passed"] for r in rows)}
    write_reports(report_dir, rows, summary)
    summary["report_dir"] = str(report_dir)
    return summary
