"""Regression baselines: round trip, accuracy and latency gates (latency on recorded timings)."""

import json

import pytest

from edgevision.check.baseline import gate_latency, latency_record, reference_workload_ms
from edgevision.cli import main


def test_missing_baseline_exits_2_and_says_how_to_create_it(capsys, yolo_cpu_int8, tmp_path):
    path = tmp_path / "nope.json"
    assert main(["check", str(yolo_cpu_int8.path), "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--update-baseline" in err and str(path) in err


def test_baseline_round_trip_and_accuracy_regression(capsys, yolo_cpu_int8, tmp_path):
    path = tmp_path / "ci" / "baseline.json"
    # latency noise on a shared 2-core machine is not what this test is about: generous latency tolerance
    args = ["check", str(yolo_cpu_int8.path), "--baseline", str(path), "--latency-tolerance", "10",
            "--latency-runs", "5"]
    assert main([*args, "--update-baseline"]) == 0
    base = json.loads(path.read_text())
    assert base["schema_version"] == 1 and base["kind"] == "baseline"
    assert {"map50", "map50_95", "agreement_map50"} <= set(base["metrics"])
    assert base["latency"]["median_ms"] > 0 and base["latency"]["normalised"] > 0
    capsys.readouterr()
    assert main(args) == 0
    assert "vs baseline" in capsys.readouterr().out
    # the same artifact against a baseline that was 3 points better: an accuracy regression
    base["metrics"]["map50"] += 3.0
    path.write_text(json.dumps(base))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "map50 is 3.00 points below the baseline" in err and "tolerance is a drop of 1" in err
    report = json.loads((yolo_cpu_int8.path / "report.json").read_text())
    assert report["baseline"]["failures"][0]["metric"] == "map50" and not report["passed"]


def test_update_baseline_refuses_to_record_a_failing_artifact(tmp_path):
    from edgevision.check.baseline import apply_baseline

    class Meta:
        imgsz = 32
        task = "detect"

    class FakeBundle:
        meta = Meta()

    class Runner:
        def run(self, graph, feeds):
            return dict(feeds)

    section = apply_baseline(FakeBundle(), {"passed": False}, tmp_path / "b.json", Runner(), {}, update=True, runs=3)
    assert not section["updated"] and not (tmp_path / "b.json").exists()


def test_latency_gate_on_recorded_timings():
    base = latency_record(10.0, 2.0, 30)  # normalised 5.0
    # the machine got 30 % slower overall: raw latency up 30 %, workload up 30 % -> no regression
    assert gate_latency(latency_record(13.0, 2.6, 30), base) is None
    # the artifact itself got 20 % slower on an unchanged machine -> regression
    failure = gate_latency(latency_record(12.0, 2.0, 30), base)
    assert failure["metric"] == "latency" and failure["delta"] == pytest.approx(0.2)
    assert "20.0 % above the baseline" in failure["message"] and "tolerance is 10 %" in failure["message"]
    # within tolerance, and a custom tolerance
    assert gate_latency(latency_record(10.9, 2.0, 30), base) is None
    assert gate_latency(latency_record(12.0, 2.0, 30), base, tolerance=0.25) is None


def test_reference_workload_is_measurable():
    assert 0.01 < reference_workload_ms(repeats=3) < 1000
