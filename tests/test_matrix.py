"""`check --matrix`: export what is missing, reuse what is current, and write md/html/junit reports."""

import base64
import json
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

import pytest

from edgevision.cli import main


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.mark.slow  # exports two bundles
def test_matrix_run_writes_reports_and_reuses_bundles(capsys, tmp_path):
    spec = tmp_path / "regression.yaml"
    # the U-Net: its recipe checks 200 scenes where the detector's checks 800, and this test checks four times
    spec.write_text(json.dumps({"models": ["mobile-unet"], "targets": ["cpu", "intel-npu"], "precisions": ["int8"],
                                "bundles_dir": str(tmp_path / "bundles"), "bench_runs": 3, "per_layer": True}))
    report = tmp_path / "report"
    assert main(["check", "--matrix", str(spec), "--report", str(report), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 cells: 2 passed, 0 failed (2 exported, 0 reused)" in out
    md = (report / "report.md").read_text()
    assert "| mobile-unet | cpu | int8 | miou |" in md and "intel-core-ultra-npu" in md
    parser = Images()
    parser.feed((report / "report.html").read_text())
    assert len(parser.srcs) >= 3  # accuracy-vs-latency, per-layer plots, worst-case overlays
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")  # self-contained
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    suite = ET.parse(report / "junit.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "2" and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == 2

    # the second run only has to show reuse: one of the two cells, without per-layer ranking
    again = tmp_path / "again.yaml"
    again.write_text(json.dumps({"models": ["mobile-unet"], "targets": ["cpu"], "precisions": ["int8"],
                                 "bundles_dir": str(tmp_path / "bundles"), "bench_runs": 1}))
    assert main(["check", "--matrix", str(again), "--report", str(tmp_path / "again")]) == 0
    assert "1 cell: 1 passed, 0 failed (0 exported, 1 reused)" in capsys.readouterr().out


def test_matrix_spec_errors_are_bad_input(capsys, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("models: [fast-yolo-demo]\ntargets: [cpu]\nprecisions: [int4]\n")
    assert main(["check", "--matrix", str(spec)]) == 2
    assert "bad.yaml: field 'precisions.0'" in capsys.readouterr().err
    assert main(["check", "--matrix", str(tmp_path / "missing.yaml")]) == 2
