"""`check --compare-with polygraphy`: NVIDIA Polygraphy's comparator on ONNX bundles (real Polygraphy, real ORT)."""

import json
import subprocess
import sys

from conftest import damaged_copy
from edgevision.cli import main
from edgevision.resources import resource_dir


def test_polygraphy_passes_a_healthy_jetson_int8_bundle(capsys, export_once, tmp_path):
    b = export_once("fast-yolo-demo", "jetson", "int8")
    out = tmp_path / "check.json"
    code = main(["check", str(b.path), "--data", str(resource_dir("calibration") / "images"), "--compare-with", "polygraphy",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    section = json.loads(out.read_text())["compare_with"]
    assert section["runners"] == ["pytorch-fp32", "onnxrt"] and section["passed"]
    (comp,) = section["comparisons"]
    stats = comp["outputs"]["output"]
    assert stats["passed_fraction"] == 1.0 and 0 < stats["median_abs_error"] < 0.05
    assert "onnxrt vs pytorch-fp32, 'output': PASS" in capsys.readouterr().out


def test_polygraphy_fails_a_damaged_artifact_with_exit_1(capsys, export_once, tmp_path):
    bad = damaged_copy(export_once("mobile-unet", "cpu", "fp32"), tmp_path / "damaged")
    code = main(["check", str(bad), "--data", str(resource_dir("calibration") / "images"), "--compare-with", "polygraphy"])
    assert code == 1
    err = capsys.readouterr().err
    assert "polygraphy: onnxrt vs pytorch-fp32 on 'output' fails" in err and "tolerance is abs 0.0001" in err


def test_polygraphy_refuses_a_non_onnx_bundle(capsys, yolo_npu_int8):
    assert main(["check", str(yolo_npu_int8.path), "--compare-with", "polygraphy", "--no-reference"]) == 2
    assert "compares ONNX artifacts" in capsys.readouterr().err


def test_missing_polygraphy_names_the_extra(yolo_cpu_int8):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] == 'polygraphy': raise ImportError('not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgevision.cli import main\n"
        f"sys.exit(main(['check', {str(yolo_cpu_int8.path)!r}, '--no-reference', '--compare-with', 'polygraphy']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "edgevision[jetson]" in res.stderr
