"""Checks on a device without PyTorch: golden inputs and FP32 outputs stored in the bundle."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import damaged_copy
from edgevision.check.golden import GOLDEN_BUDGET_BYTES, load_golden

BLOCK_TORCH = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, *a):\n"
    "        if name.split('.')[0] == 'torch': raise ImportError('no torch on this device')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def test_golden_data_is_stored_small_and_complete(yolo_cpu_int8, unet_cpu_int8):
    for b in (yolo_cpu_int8, unet_cpu_int8):
        assert (b.path / "golden.npz").stat().st_size < GOLDEN_BUDGET_BYTES
        g = load_golden(b)
        assert list(g) == ["model"]  # one graph, stored under its name
        s = b.meta.imgsz
        image = g["model"]["inputs"]["image"]
        assert image.dtype == np.uint8 and image.shape[1:] == (s, s, 3)
        assert b.meta.golden["samples"] == b.meta.golden["graphs"]["model"]["samples"] == len(image) >= 16
    out = load_golden(yolo_cpu_int8)["model"]["outputs"]
    assert out["output"].dtype == np.float16 and out["output"].shape[1:] == (7, 7, 15)
    out = load_golden(unet_cpu_int8)["model"]["outputs"]
    assert out["argmax.output"].dtype == np.uint8 and out["confidence.output"].dtype == np.float16


def test_golden_budget_drops_samples_but_keeps_two_a_graph(tmp_path):
    """A 1024 px bundle may take 16 MB, a smaller one 5 MB; noise does not compress, so samples are dropped
    until the file fits, never below 2 per graph."""
    from edgevision.check.golden import GOLDEN_BUDGET_BYTES_LARGE, golden_budget, write_golden

    assert golden_budget(512) == GOLDEN_BUDGET_BYTES and golden_budget(1024) == GOLDEN_BUDGET_BYTES_LARGE
    rng = np.random.default_rng(0)
    n = 12
    per_graph = {"image_encoder": ({"image": rng.integers(0, 256, (n, 512, 512, 3), dtype=np.uint8)},
                                   {"image_embeddings": rng.standard_normal((n, 64, 32, 32), dtype=np.float32)}),
                 "mask_decoder": ({"image_embeddings": rng.standard_normal((n, 64, 32, 32), dtype=np.float32),
                                   "point_coords": rng.random((n, 6, 2), dtype=np.float32)},
                                  {"low_res_masks": rng.standard_normal((n, 3, 128, 128), dtype=np.float32)})}
    info = write_golden(tmp_path / "golden.npz", "detect", per_graph, 512)
    assert 2 <= info["samples"] < n and info["bytes"] <= GOLDEN_BUDGET_BYTES
    assert info["graphs"] == {"image_encoder": {"samples": info["samples"]}, "mask_decoder": {"samples": info["samples"]}}
    with np.load(tmp_path / "golden.npz") as z:
        assert len(z["mask_decoder/inputs/point_coords"]) == info["samples"]
    huge = {"g": ({"x": rng.standard_normal((4, 2_000_000), dtype=np.float32)}, {"y": np.zeros((4, 1), np.float32)})}
    assert write_golden(tmp_path / "huge.npz", "detect", huge, 512)["samples"] == 2  # the floor holds


def test_check_runs_where_importing_torch_fails(yolo_cpu_int8, tmp_path):
    out = tmp_path / "check.json"
    code = BLOCK_TORCH + (
        "from edgevision.cli import main\n"
        f"rc = main(['check', {str(yolo_cpu_int8.path)!r}, '--json', {str(out)!r}])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["reference"] == "golden" and report["passed"]
    assert report["agreement"]["agreement_map50"] >= 95
    (sim,) = report["output_similarity"].values()
    assert sim["cosine"] > 0.99 and sim["sqnr_db"] > 15
    assert "agreement_map50" in res.stdout


def test_golden_check_catches_a_damaged_artifact(capsys, export_once, tmp_path):
    from edgevision.cli import main

    bad = damaged_copy(export_once("mobile-unet", "cpu", "fp32"), tmp_path / "damaged")
    assert main(["check", str(bad), "--no-reference"]) == 1
    err = capsys.readouterr().err
    assert "agreement_miou" in err and "floor" in err


@pytest.mark.slow
def test_export_golden_option_sets_how_many_inputs_are_stored(capsys, tmp_path):
    """--golden N stores N inputs; --golden 0 none, and a check without PyTorch then says what is missing."""
    from edgevision.bundle import load_bundle
    from edgevision.cli import main

    few, none = tmp_path / "few", tmp_path / "none"
    for out, n in ((few, "3"), (none, "0")):
        assert main(["export", "mobile-unet", "--target", "cpu", "--precision", "fp32", "--random-weights",
                     "--golden", n, "--out", str(out)]) == 0
    assert load_bundle(few).meta.golden["samples"] == 3
    assert load_bundle(none).meta.golden is None and not (none / "golden.npz").exists()
    capsys.readouterr()
    assert main(["check", str(none), "--no-reference"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no golden data" in err and len(err.splitlines()) == 1
