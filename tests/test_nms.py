import cv2
import numpy as np
import pytest

from edgevision.ops.nms import non_max_suppression


def random_boxes(rng, n, classes=5, span=300):
    xy = rng.uniform(0, span, (n, 2))
    wh = rng.uniform(10, 120, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    # distinct scores: ties would make the kept set depend on sort stability
    scores = rng.permutation(n).astype(np.float32) / n + 0.001
    return boxes, scores, rng.integers(0, classes, n)


def cv2_keep(boxes, scores, classes, iou, score_thr=0.0, agnostic=False):
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    if agnostic:
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_thr, iou)
    else:
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), score_thr, iou)
    return set(np.asarray(idx).ravel().tolist())


@pytest.mark.parametrize("n", [20, 98, 444, 1323])
@pytest.mark.parametrize("iou", [0.3, 0.45, 0.7])
def test_matches_opencv_class_aware(n, iou):
    rng = np.random.default_rng(n * 7 + int(iou * 10))
    boxes, scores, cls = random_boxes(rng, n)
    ours = non_max_suppression(boxes, scores, cls, iou_threshold=iou, max_detections=10_000)
    assert set(ours.tolist()) == cv2_keep(boxes, scores, cls, iou)
    assert np.all(np.diff(scores[ours]) <= 0), "best score first"


@pytest.mark.parametrize("n", [50, 500])
def test_matches_opencv_class_agnostic(n):
    rng = np.random.default_rng(n)
    boxes, scores, cls = random_boxes(rng, n)
    ours = non_max_suppression(boxes, scores, iou_threshold=0.5, class_agnostic=True, max_detections=10_000)
    assert set(ours.tolist()) == cv2_keep(boxes, scores, cls, 0.5, agnostic=True)


def test_score_threshold_max_detections_and_top_k():
    rng = np.random.default_rng(3)
    boxes, scores, cls = random_boxes(rng, 400, span=3000)  # sparse: little suppression
    keep = non_max_suppression(boxes, scores, cls, score_threshold=0.5)
    assert (scores[keep] > 0.5).all()
    assert len(non_max_suppression(boxes, scores, cls, max_detections=7)) == 7
    top = non_max_suppression(boxes, scores, cls, top_k=10, max_detections=1000)
    assert set(top.tolist()) <= set(np.argsort(-scores)[:10].tolist())


def test_identical_boxes_of_different_classes_both_survive():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert sorted(non_max_suppression(boxes, scores, np.array([0, 1])).tolist()) == [0, 1]
    assert non_max_suppression(boxes, scores, class_agnostic=True).tolist() == [0]


def test_empty_and_bad_arguments():
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0), np.zeros(0)).size == 0
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        non_max_suppression(np.zeros((3, 5)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="scores"):
        non_max_suppression(np.zeros((3, 4)), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="class_ids"):
        non_max_suppression(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="iou_threshold"):
        non_max_suppression(np.zeros((3, 4)), np.zeros(3), np.zeros(3), iou_threshold=1.5)


def test_nms_graph_file_is_what_the_script_builds():
    onnx = pytest.importorskip("onnx", reason="onnx is in the [export] extra; the check needs it")
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_nms_onnx", root / "scripts" / "make_nms_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert onnx.load(str(mod.OUT)).SerializeToString() == mod.build().SerializeToString()


def test_class_aware_with_negative_coordinates():
    """Boxes reaching past the top-left corner (as a decode can give) still keep classes apart."""
    rng = np.random.default_rng(11)
    boxes, scores, cls = random_boxes(rng, 200, span=150)
    ours = non_max_suppression(boxes - 200.0, scores, cls, iou_threshold=0.45, max_detections=10_000)
    # IoU does not change under translation; cv2 is given the unshifted boxes because its own class offset
    # (class x (max coordinate + 1)) assumes coordinates are non-negative.
    assert set(ours.tolist()) == cv2_keep(boxes, scores, cls, 0.45)


def test_public_session_run_gives_the_same_kept_set():
    """The wrapper calls ONNX Runtime's binding directly to skip per-call feed validation; the public
    InferenceSession.run, its fallback, must keep exactly the same boxes."""
    from edgevision.ops.nms import _cache

    rng = np.random.default_rng(5)
    boxes, scores, cls = random_boxes(rng, 300)
    cache = _cache()
    fast = non_max_suppression(boxes, scores, cls, iou_threshold=0.5, max_detections=10_000)
    binding, cache.run = cache.run, cache.session.run
    try:
        public = non_max_suppression(boxes, scores, cls, iou_threshold=0.5, max_detections=10_000)
    finally:
        cache.run = binding
    assert binding is not cache.session.run, "this ONNX Runtime exposes its binding; the fast path must be in use"
    np.testing.assert_array_equal(fast, public)
