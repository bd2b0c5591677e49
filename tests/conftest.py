"""Shared fixtures. Heavy conversions run once per test session and are reused by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
if "EDGEVISION_SHARED" in os.environ:
    SHARED = Path(os.environ["EDGEVISION_SHARED"])
LABELED = SHARED / "data" / "labeled"

if "PYTEST_XDIST_WORKER" in os.environ:
    # Two workers on two cores: each computes on one thread. With every runtime's default of one thread per
    # core, two concurrent checks took 118 s where one alone takes 33 s (pools spinning against each other);
    # on one thread each, 42 s. Subprocesses inherit the caps.
    os.environ.setdefault("EDGEVISION_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads the project's shared folder (reference outputs of the "
                    f"official models, labelled samples), which sits beside the repo as ../shared in the project's "
                    f"checkouts and CI; point EDGEVISION_SHARED at a copy to run it")
    return path


# Fixtures that export bundles (tens of seconds each on 2 cores): a test that uses one is marked slow, so that
# `pytest -m "not slow"` is the quick subset. Tests that export inline carry @pytest.mark.slow themselves.
EXPORTING_FIXTURES = {"export_once", "yolo_cpu_int8", "yolo_npu_int8", "unet_cpu_int8", "unet_npu_int8", "checked",
                      "rpi_checks", "jetson_checks", "slow_bundle", "yolo_jetson_int8"}


# Session fixtures whose result (check reports, not files) each xdist worker would compute for itself: the tests
# that use one run on one worker (`--dist loadgroup`), so the checks run once. Spread over both workers, the rpi
# and jetson checks ran twice (103-177 s and 80 s more, session 19). pytest 9.2 silently stopped xdist's grouping
# (pytest-dev/pytest-xdist#1386), hence pytest < 9.2 in the dev extra.
PER_WORKER_FIXTURES = ("checked", "rpi_checks", "jetson_checks")


@pytest.hookimpl(tryfirst=True)  # before xdist turns the groups into node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if EXPORTING_FIXTURES & names:
            item.add_marker(pytest.mark.slow)
        group = next((name for name in PER_WORKER_FIXTURES if name in names), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def bundle_root(tmp_path_factory) -> Path:
    """Where session bundles go. Under pytest-xdist (the README's `-n 2`) the workers share one folder, so a
    bundle two workers need is exported once (the other waits on its lock)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return tmp_path_factory.mktemp("bundles")
    root = tmp_path_factory.getbasetemp().parent / "bundles"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session", autouse=True)
def suite_cache(bundle_root) -> Path:
    """The suite's cache folder (unpacked archives, cached FP32 reference outputs), shared by the workers and
    the subprocesses they start, and new every run: nothing is reused from an earlier run or from ~/.cache."""
    root = bundle_root.parent / "edgevision-cache"
    root.mkdir(exist_ok=True)
    os.environ["EDGEVISION_CACHE"] = str(root)
    return root


def _export(root: Path, model: str, target: str, precision: str, **kw):
    import fcntl

    from edgevision.bundle import load_bundle
    from edgevision.export import export_bundle

    name = f"{model}-{target}-{precision}" + ("-random" if kw.get("random_weights") else "") + \
        (f"-{kw['imgsz']}" if kw.get("imgsz") else "")
    path = root / name
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return load_bundle(path)
        return export_bundle(model, target, precision, path, **kw)


@pytest.fixture(scope="session")
def export_once(bundle_root):
    """export_once(model, target, precision, **kw) -> Bundle, cached for the session."""
    return lambda model, target, precision, **kw: _export(bundle_root, model, target, precision, **kw)


@pytest.fixture(scope="session")
def yolo_cpu_int8(export_once):
    return export_once("fast-yolo-demo", "cpu", "int8")


@pytest.fixture(scope="session")
def yolo_npu_int8(export_once):
    return export_once("fast-yolo-demo", "intel-npu", "int8")


@pytest.fixture(scope="session")
def unet_cpu_int8(export_once):
    return export_once("mobile-unet", "cpu", "int8")


@pytest.fixture(scope="session")
def unet_npu_int8(export_once):
    return export_once("mobile-unet", "intel-npu", "int8")


def damaged_copy(bundle, dest: Path, conv: int = 2, factor: float = 8.0) -> Path:
    """A copy of an ONNX bundle with one convolution's weight scaled by ``factor``: a broken artifact."""
    import shutil

    import onnx
    from onnx import numpy_helper

    shutil.copytree(bundle.path, dest)
    model = onnx.load(str(dest / "model.onnx"))
    convs = [i for i in model.graph.initializer if len(i.dims) == 4 and i.dims[1] > 1]
    convs[conv].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(convs[conv]) * factor, convs[conv].name))
    onnx.save(model, str(dest / "model.onnx"))
    return dest
