"""`edgevision demo` as a user runs it: the console script, end to end."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


def tracker_fails_only_on_a_mask_choice_tie(report: dict) -> bool:
    """The demo tracker's INT8 misses its worst-frame floor on some CPUs (an AVX-512 VNNI EPYC: cpu, jetson and
    intel-npu; none on an AVX2-only one) where its FP32 weights choose between two candidate masks predicted
    less than 0.01 apart, which any rounding can swap (benchmarks/RESULTS.md, session 20). That failure, and
    only with check's note naming the tie, is the weights' known shortfall (issue 16), not a regression."""
    failed = {f["metric"] for f in report["failures"]}
    return failed == {"min_frame_iou"} and any("mask-choice tie in the FP32 tracker" in n for n in report["notes"])


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    exe = shutil.which("edgevision") or str(Path(sys.executable).with_name("edgevision"))
    out = tmp_path / "demo"
    res = subprocess.run([exe, "demo", "--out", str(out), "--frames", "16", "--runs", "5"], capture_output=True,
                         text=True, timeout=1200)
    assert (out / "summary.json").is_file(), res.stderr[-3000:]
    tracker = out / "bundles" / "sam-track-demo-cpu-int8"
    tracker_report = json.loads((tracker / "report.json").read_text())
    tracker_tie = tracker_fails_only_on_a_mask_choice_tie(tracker_report)
    # the demo exits 1 when any model misses its budget, and says which
    assert res.returncode == (1 if tracker_tie else 0), res.stderr[-3000:]
    text = res.stdout
    for word in ("fast-yolo-demo", "mobile-unet", "deit-tiny-demo", "efficient-sam-demo", "sam-track-demo", "map50",
                 "miou", "top1", "miou_box", "mask_iou", "J&F", "min_frame_iou", "speed-up", "masks per frame", "tracks",
                 "written:"):
        assert word in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] == 1 and len(summary["rows"]) == 5
    for row in summary["rows"]:
        tie = tracker_tie and row["model"] == "sam-track-demo"
        assert (row["passed"] or tie) and row["reference_ms"] > 0 and row["artifact_ms"] > 0
        # INT8 beats PyTorch FP32 for the CNNs and DeiT everywhere measured. The two multi-graph models keep
        # graphs float by recipe, so their ratio rests on fewer INT8 kernels: 1.6x and 1.7x on a quiet AVX2-only
        # EPYC, but not asserted (benchmarks/RESULTS.md, session 18)
        slow_here = row["model"] in ("efficient-sam-demo", "sam-track-demo")
        assert row["speedup"] > (0 if slow_here else 1), row
        assert len(row["gated"]) >= 3 and all(g["passed"] or (tie and g["metric"] == "min_frame_iou")
                                              for g in row["gated"])
        for g in row["gated"]:  # a first run on any CPU keeps 0.3 points inside every INT8 budget
            if "max_drop" in g:
                assert -g["delta"] <= g["max_drop"] - 0.3, g
    assert summary["video"]["frames"] == 16 and summary["video"]["detection_vs_truth"]["map50"] > 70
    masks = summary["video"]["prompted_masks"]  # each detection box prompts a mask on the object it boxes
    assert masks["masks_per_frame"] > 0 and masks["on_object"] > 70
    tracks = summary["video"]["tracks"]  # the detector's boxes start tracks, which stay on their objects
    assert tracks["started"] >= 1 and tracks["masks_per_frame"] > 0 and tracks["on_object"] > 50
    for name in ("detections.mp4", "segmentation.mp4", "prompted-masks.mp4", "tracks.mp4"):
        cap = cv2.VideoCapture(str(out / name))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    assert len(list((out / "photos").glob("*.jpg"))) == 7
    assert (out / "bundles" / "fast-yolo-demo-cpu-int8" / "report.json").is_file()
    sam = out / "bundles" / "efficient-sam-demo-cpu-int8"
    assert (sam / "report.json").is_file()
    # the INT8 floor holds on real photos too (an 8 x 8 grid of point prompts on each of the 7 photos):
    # 98.05 here; with int8 attention matmuls and convolutions it was 83.6 (benchmarks/RESULTS.md)
    from edgevision.check.compare import check_bundle
    from edgevision.config import resource_dir

    photos = check_bundle(sam, data=resource_dir("calibration") / "images")
    assert photos["data"]["images"] == 7 and photos["agreement"]["mask_iou"] >= 97, photos["agreement"]


def test_demo_table_shows_every_gated_metric_and_marks_the_failing_one(capsys):
    """The summary table used to show only mAP@0.5 next to FAIL while mAP@0.5:0.95 had failed."""
    from edgevision import cli

    row = {"model": "fast-yolo-demo", "target": "cpu", "precision": "int8", "metric": "map50", "reference": 85.8,
           "artifact": 85.1, "delta": -0.7, "reference_ms": 9.0, "artifact_ms": 2.0, "end_to_end_ms": 2.4,
           "speedup": 4.5, "passed": False, "agreement": {"agreement_map50": 98.0},
           "gated": [{"metric": "map50", "reference": 85.8, "artifact": 85.1, "delta": -0.7, "max_drop": 1.0,
                      "passed": True},
                     {"metric": "map50_95", "reference": 44.4, "artifact": 42.897, "delta": -1.503, "max_drop": 1.5,
                      "passed": False},
                     {"metric": "agreement_map50", "artifact": 98.0, "min": 95.0, "passed": True}]}
    summary = {"rows": [row], "video": {"frames": 1, "detection_vs_truth": {"map50": 90.0}, "pipeline": {}},
               "photos": [], "written": {}}
    cli.print_demo(summary)  # a demo summary as run_demo returns it, with mAP@0.5:0.95 just outside its budget
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if "FAIL" in line]
    assert len(failing) == 1 and "map50_95" in failing[0] and "-1.503" in failing[0]
    assert "agreement_map50" in out and "drop <= 1" in out
