"""Per-layer divergence on ONNX Runtime, OpenVINO and LiteRT artifacts."""

import json
import shutil

import numpy as np
import pytest

from edgevision.check.per_layer import Node, rank_by_added_noise, rank_layers, sqnr_db
from edgevision.cli import main


def test_sqnr_definition():
    ref = np.ones(100, np.float32)
    assert sqnr_db(ref, ref) == float("inf")
    assert sqnr_db(ref, ref * 1.1) == pytest.approx(20.0)  # error 0.1 of signal 1 -> 10 log10(1 / 0.01)


def test_rank_layers_attributes_error_to_the_layer_that_adds_it():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(1000).astype(np.float32) for _ in range(3))
    nodes = [Node("l1", "Conv", ["x"], ["t1"]), Node("l2", "Conv", ["t1"], ["t2"]), Node("l3", "Relu", ["t2"], ["t3"])]
    ref = {"t1": [a], "t2": [b], "t3": [c]}
    art = {"t1": [a + 0.001], "t2": [b + 0.3], "t3": [c + 0.3]}  # l2 adds the error; l3 only carries it
    ranked = rank_by_added_noise(rank_layers(nodes, ref, art, "x"))
    assert ranked[0].name == "l2"
    assert abs(next(e for e in ranked if e.name == "l3").added_db) < 1.0
    # l1 is fed an exact input: its (small) error does not outrank the layer that really degrades the signal
    l1, l2 = (next(e for e in ranked if e.name == n) for n in ("l1", "l2"))
    assert ranked.index(l1) > ranked.index(l2) and l1.sqnr_db > 55 > 20 > l2.sqnr_db


def test_per_layer_puts_the_perturbed_layer_first(capsys, export_once, tmp_path):
    import onnx
    from onnx import numpy_helper

    good = export_once("fast-yolo-demo", "cpu", "fp32")
    bad = tmp_path / "perturbed"
    shutil.copytree(good.path, bad)
    model = onnx.load(str(bad / "model.onnx"))
    consumers = {i: n for n in model.graph.node for i in n.input}
    convs = [i for i in model.graph.initializer if len(i.dims) == 4]
    target = convs[4]
    w = numpy_helper.to_array(target).copy()
    w += np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) * np.abs(w).mean() * 0.5
    target.CopyFrom(numpy_helper.from_array(w, target.name))
    onnx.save(model, str(bad / "model.onnx"))
    perturbed_node = consumers[target.name].name
    code = main(["check", str(bad), "--per-layer"])
    assert code == 1  # half a weight's magnitude of noise in one conv: the FP32 bundle fails its tolerances
    printed = capsys.readouterr().out
    report = json.loads((bad / "report.json").read_text())
    top = report["per_layer"]["top"]
    assert top[0]["name"] == perturbed_node, top[:3]
    assert top[0]["name"] in report["per_layer"]["keep_in_higher_precision"]
    assert (bad / "per_layer.png").stat().st_size > 5000
    assert "per-layer error" in printed and perturbed_node in printed
    # the printed ranking is by the column it shows, and "keep in higher precision" names its head
    rows = [line.split() for line in printed.splitlines() if line.split()[:1] and line.split()[0].isdigit()
            and len(line.split()) > 3]
    ranked = [float(r[2]) for r in rows]
    assert len(ranked) >= 5 and ranked == sorted(ranked, reverse=True)
    keep = report["per_layer"]["keep_in_higher_precision"]
    assert keep == [r[1] for r in rows[: len(keep)]]


@pytest.mark.parametrize("target", ["intel-npu", "rpi", "jetson"])
def test_per_layer_runs_on_every_backend(export_once, target):
    from edgevision.check.per_layer import per_layer_report

    b = export_once("fast-yolo-demo", target, "int8")
    report = per_layer_report(b, samples=3)
    layers = report["layers"]
    assert len(layers) >= 9  # at least the nine convolutions are matched
    finite = [x["sqnr_db"] for x in layers if x["sqnr_db"] is not None]
    # a healthy INT8 artifact stays well above noise on every matched layer; a layer paired with the wrong
    # reference tensor shows up as an SQNR near or below 0 dB
    assert finite and min(finite) > 10, [(x["name"], x["sqnr_db"]) for x in layers]
    assert len(report["top"]) == min(10, len(layers))
