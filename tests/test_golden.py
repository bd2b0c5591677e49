"""Checks on a device without PyTorch: golden inputs and FP32 outputs stored in the bundle."""

import json
import subprocess
import sys

import numpy as np

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
        g = load_golden(b.path)
        s = b.meta.imgsz
        assert g["inputs"].dtype == np.uint8 and g["inputs"].shape[1:] == (s, s, 3)
        assert b.meta.golden["samples"] == len(g["inputs"]) >= 16
    g = load_golden(yolo_cpu_int8.path)
    assert g["output_0"].dtype == np.float16 and g["output_0"].shape[1:] == (7, 7, 15)
    g = load_golden(unet_cpu_int8.path)
    assert g["argmax_0"].dtype == np.uint8 and g["confidence_0"].dtype == np.float16


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
