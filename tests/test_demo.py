"""`edgevision demo` as a user runs it: the console script, end to end."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    exe = shutil.which("edgevision") or str(Path(sys.executable).with_name("edgevision"))
    out = tmp_path / "demo"
    res = subprocess.run([exe, "demo", "--out", str(out), "--frames", "16", "--runs", "5"], capture_output=True,
                         text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    for word in ("fast-yolo-demo", "mobile-unet", "map50", "miou", "speed-up", "written:"):
        assert word in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] == 1 and len(summary["rows"]) == 2
    for row in summary["rows"]:
        assert row["passed"] and row["speedup"] > 1 and row["reference_ms"] > 0 and row["artifact_ms"] > 0
    assert summary["video"]["frames"] == 16 and summary["video"]["detection_vs_truth"]["map50"] > 70
    for name in ("detections.mp4", "segmentation.mp4"):
        cap = cv2.VideoCapture(str(out / name))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    assert len(list((out / "photos").glob("*.jpg"))) == 7
    assert (out / "bundles" / "fast-yolo-demo-cpu-int8" / "report.json").is_file()
