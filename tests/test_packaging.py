"""The wheel carries everything an installed package needs: recipes, targets, calibration set, weights."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_package_data(tmp_path):
    res = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("edgevision-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("edgevision/_resources/recipes/fast-yolo-demo.yaml",
                     "edgevision/_resources/recipes/regression.yaml",
                     "edgevision/_resources/targets/raspberry-pi-5.yaml",
                     "edgevision/_resources/calibration/synthetic.yaml",
                     "edgevision/_resources/calibration/images/dog.jpg",
                     "edgevision/_resources/calibration/SOURCES.md",
                     "edgevision/models/weights/fast-yolo-demo.pt",
                     "edgevision/models/weights/mobile-unet.pt",
                     "edgevision/ops/nms.onnx"):
        assert required in names, required
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Requires-Dist: onnxruntime" in text and "Provides-Extra: rpi" in text
    assert "torch" not in [line.split()[1].split(">")[0] for line in text.splitlines()
                           if line.startswith("Requires-Dist:") and "extra ==" not in line]
