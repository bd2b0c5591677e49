"""A promptable bundle as a user drives it: PromptPredictor (set_image once, predict per prompt) on the artifact and
on the FP32 PyTorch reference behind the same interface, and `edgevision run` with --point, --box and
--prompts-from, including the bad prompts that must exit 2 with one line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import SHARED
from edgevision.check.reference import reference_runner
from edgevision.cli import main
from edgevision.errors import BadInput
from edgevision.prompt_predictor import PromptPredictor

MODEL = "efficient-sam-vitt"
IMGSZ = 128  # the demo-size rule of the issue: 1024 px runs are heavy (tests/test_efficient_sam.py)
PHOTO = SHARED / "data" / "images" / "astronaut.png"


@pytest.fixture(scope="module")
def sam_bundle(export_once):
    return export_once(MODEL, "cpu", "fp32", random_weights=True, imgsz=IMGSZ)


@pytest.fixture(scope="module")
def photo():
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def test_the_bundle_has_the_two_graphs_of_the_architecture_table(sam_bundle):
    graphs = sam_bundle.meta.graphs
    assert list(graphs) == ["image_encoder", "mask_decoder"]
    assert [t.name for t in graphs["mask_decoder"].inputs] == ["image_embeddings", "point_coords", "point_labels"]
    assert graphs["mask_decoder"].inputs[1].shape == [1, 6, 2]
    g = IMGSZ // 16
    assert graphs["image_encoder"].outputs[0].shape == [1, 256, g, g]
    assert graphs["mask_decoder"].outputs[0].shape == [1, 3, 4 * g, 4 * g]


def test_predictor_matches_the_fp32_reference_and_runs_only_the_decoder_per_prompt(sam_bundle, photo):
    artifact = PromptPredictor(sam_bundle)
    reference = PromptPredictor(sam_bundle, runner=reference_runner(sam_bundle))
    with pytest.raises(RuntimeError, match="call set_image"):
        artifact.predict(points=[(10, 10)])
    h, w = photo.shape[:2]
    for p in (artifact, reference):
        p.set_image(photo)
    calls = []
    run = artifact.runner.run
    artifact.runner.run = lambda graph, feeds: calls.append(graph) or run(graph, feeds)
    prompts = [dict(points=[(w * 0.5, h * 0.3)]), dict(points=[(w * 0.5, h * 0.3), (20, 20)], labels=[1, 0]),
               dict(box=(w * 0.2, h * 0.1, w * 0.8, h * 0.9)), dict(points=[(w * 0.4, h * 0.5)],
                                                                 box=(w * 0.2, h * 0.1, w * 0.8, h * 0.9))]
    for kw in prompts:
        a_low, a_iou = artifact.decode(artifact.prompt(**kw))
        r_low, r_iou = reference.decode(reference.prompt(**kw))
        # the same float32 graph in ONNX Runtime and eager PyTorch: summation order only (measured ~1e-6)
        np.testing.assert_allclose(a_low, r_low, atol=1e-3)
        np.testing.assert_allclose(a_iou, r_iou, atol=1e-3)
        masks, scores = artifact.predict(**kw)
        assert masks.shape == (3, h, w) and masks.dtype == bool and scores.shape == (3,)
        one, best = artifact.predict(**kw, multimask=False)
        assert one.shape == (1, h, w) and best[0] == scores.max()
        assert (one[0] == masks[int(np.argmax(scores))]).all()
        logits, _ = artifact.predict(**kw, return_logits=True)
        assert logits.dtype == np.float32 and ((logits > 0) == masks).all()
    assert calls == ["mask_decoder"] * (len(calls)) and len(calls) == 4 * 4
    with pytest.raises(ValueError, match="outside the 512x512 image"):
        artifact.predict(points=[(600, 10)])
    with pytest.raises(ValueError, match="at most 6"):
        artifact.predict(points=[(1, 1)] * 7)
    artifact.reset_image()
    assert not artifact.is_image_set


def test_prompt_predictor_refuses_a_bundle_without_a_prompt_decoder(yolo_cpu_int8):
    with pytest.raises(BadInput, match="PromptPredictor needs a promptable segmentation bundle"):
        PromptPredictor(yolo_cpu_int8)


def test_run_with_points_and_boxes_writes_masks_per_prompt(capsys, sam_bundle, tmp_path):
    jsonl, video = tmp_path / "masks.jsonl", tmp_path / "masks.mp4"
    code = main(["run", str(sam_bundle.path), "--source", str(PHOTO), "--point", "256,150", "--point", "40,40,0",
                 "--box", "100,60,420,500", "--box", "10,10,200,200", "--jsonl", str(jsonl), "--out", str(video)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads(jsonl.read_text().splitlines()[0])
    masks = rec["masks"]
    # two boxes: each is its own prompt, and the points another
    assert [m["kind"] for m in masks] == ["points", "box", "box"]
    assert masks[0]["prompt"] == {"points": [[256.0, 150.0], [40.0, 40.0]], "labels": [1, 0]}
    assert masks[1]["prompt"] == {"box": [100.0, 60.0, 420.0, 500.0]}
    for m in masks:
        assert set(m) == {"index", "kind", "prompt", "area", "box", "score"} and 0 <= m["area"] <= 512 * 512
        assert (m["box"] is None) == (m["area"] == 0)
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 1


def test_run_detect_then_segment_turns_each_detection_into_a_box_prompt(capsys, sam_bundle, yolo_cpu_int8,
                                                                        tmp_path):
    from edgevision import Predictor

    photos = SHARED / "data" / "images"
    jsonl = tmp_path / "chain.jsonl"
    code = main(["run", str(sam_bundle.path), "--source", str(photos), "--prompts-from", str(yolo_cpu_int8.path),
                 "--jsonl", str(jsonl), "--max-frames", "3"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 3 and sum(len(r["masks"]) for r in rows) > 0  # the demo detector finds shapes there
    detector = Predictor(yolo_cpu_int8)
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for row, path in zip(rows, files):
        dets = detector.predict(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        assert len(row["masks"]) == min(len(dets), 16)
        assert all(m["kind"] == "box" for m in row["masks"])
        if len(dets):
            best = dets.boxes[int(np.argmax(dets.scores))]
            np.testing.assert_allclose(row["masks"][0]["prompt"]["box"], best, atol=0.06)


@pytest.mark.parametrize("args, message", [
    (["--point", "600,10"], "a frame of 512x512: point 600,10 is outside the 512x512 image"),
    (["--point", "1,1"] * 7, "--point: 7 point(s) need 7 slots; the decoder takes at most 6"),
    (["--box", "50,50,10,80"], "--box 50,50,10,80: needs x1 > x0 and y1 > y0"),
    (["--box", "1,2,3"], "--box 1,2,3: expected x0,y0,x1,y1"),
    (["--point", "1,1,5"], "--point 1,1,5: expected x,y or x,y,label"),
    ([], "say what to segment with --point x,y or --box x0,y0,x1,y1, or --prompts-from"),
])
def test_bad_prompts_exit_2_with_one_line(capsys, sam_bundle, args, message):
    assert main(["run", str(sam_bundle.path), "--source", str(PHOTO), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_prompts_from_a_bundle_that_is_not_a_detector_exits_2(capsys, sam_bundle, yolo_cpu_int8):
    assert main(["run", str(sam_bundle.path), "--source", str(PHOTO), "--prompts-from", str(sam_bundle.path)]) == 2
    err = capsys.readouterr().err
    assert "a prompt-segment bundle" in err and "give a detector bundle" in err
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(PHOTO), "--point", "1,1"]) == 2
    assert "prompt a promptable segmentation bundle" in capsys.readouterr().err


def test_bench_times_an_image_and_a_click(tmp_path, sam_bundle):
    """`bench` on a promptable bundle: the encoder plus one decoder call, beside the PyTorch model, and the
    PromptPredictor end to end on a camera-sized frame."""
    report_path = tmp_path / "bench.json"
    assert main(["bench", str(sam_bundle.path), "--runs", "3", "--warmup", "1", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert {"artifact", "end_to_end", "pytorch_fp32"} <= set(report["latency"])
    assert report["latency"]["end_to_end"]["median_ms"] > 0
