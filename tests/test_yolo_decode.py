import numpy as np
import pytest

from edgevision.ops.preprocess import Geometry
from edgevision.ops.yolo import YoloV1Postprocessor, decode_yolov1

S, B, C, IMG = 7, 2, 5, 224


def empty_pred():
    p = np.zeros((S, S, B * 5 + C), np.float32)
    p[..., B * 5] = 1.0  # class 0 prob 1 everywhere, but confidence 0
    return p


def put(pred, row, col, b, x, y, w, h, conf, cls, prob=1.0):
    pred[row, col, b * 5 : b * 5 + 5] = [x, y, np.sqrt(w), np.sqrt(h), conf]
    pred[row, col, B * 5 :] = (1 - prob) / (C - 1)
    pred[row, col, B * 5 + cls] = prob


def test_decode_places_box_from_cell_offsets_and_squared_sizes():
    pred = empty_pred()
    put(pred, 2, 5, 1, 0.5, 0.25, 0.2, 0.1, conf=0.8, cls=3, prob=0.5)
    boxes, scores, cls = decode_yolov1(pred, grid=S, boxes_per_cell=B, num_classes=C, imgsz=IMG,
                                       score_threshold=0.01)
    assert len(boxes) == 1
    cx, cy = (5 + 0.5) / S * IMG, (2 + 0.25) / S * IMG
    w, h = 0.2 * IMG, 0.1 * IMG
    np.testing.assert_allclose(boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    assert scores[0] == pytest.approx(0.8 * 0.5)  # confidence x class probability
    assert cls[0] == 3


@pytest.mark.parametrize("sqrt_wh", [True, False])
def test_decode_matches_a_per_box_loop(sqrt_wh):
    """The vectorised decode against the darknet formula written box by box, on random outputs."""
    pred = np.random.default_rng(3).random((S, S, B * 5 + C)).astype(np.float32)
    boxes, scores, cls = decode_yolov1(pred, grid=S, boxes_per_cell=B, num_classes=C, imgsz=IMG,
                                       score_threshold=0.3, sqrt_wh=sqrt_wh)
    expected = []
    for row in range(S):
        for col in range(S):
            probs = pred[row, col, B * 5 :]
            for b in range(B):
                x, y, w, h, conf = pred[row, col, b * 5 : b * 5 + 5]
                if sqrt_wh:
                    w, h = w * w, h * h
                score = conf * probs.max()
                if score > 0.3:
                    cx, cy = (col + x) / S * IMG, (row + y) / S * IMG
                    expected.append(([cx - w * IMG / 2, cy - h * IMG / 2, cx + w * IMG / 2, cy + h * IMG / 2],
                                     score, probs.argmax()))
    assert 0 < len(expected) < S * S * B
    np.testing.assert_allclose(boxes, [e[0] for e in expected], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(scores, [e[1] for e in expected], rtol=1e-6)
    assert cls.tolist() == [e[2] for e in expected]


def test_postprocessor_nms_and_mapping_to_source_pixels():
    pred = empty_pred()
    put(pred, 3, 3, 0, 0.5, 0.5, 0.3, 0.3, conf=0.9, cls=1)
    put(pred, 3, 3, 1, 0.52, 0.5, 0.3, 0.3, conf=0.6, cls=1)  # duplicate of box 0: suppressed
    put(pred, 0, 0, 0, 0.5, 0.5, 0.1, 0.1, conf=0.7, cls=2)
    post = YoloV1Postprocessor({"kind": "yolov1", "grid": S, "boxes_per_cell": B, "num_classes": C}, IMG,
                               conf=0.25, iou=0.45)
    geo = Geometry(scale_x=0.35, scale_y=0.35, pad_x=0, pad_y=28, src_w=640, src_h=480)  # letterbox 640x480
    dets = post({"output": pred}, geo)
    assert len(dets) == 2
    assert dets.class_ids.tolist() == [1, 2]
    cx, cy = 3.5 / S * IMG, 3.5 / S * IMG
    np.testing.assert_allclose(dets.boxes[0], np.array([cx - 33.6, cy - 33.6 - 28, cx + 33.6, cy + 33.6 - 28]) / 0.35,
                               rtol=1e-4)


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="YOLOv1 output"):
        decode_yolov1(np.zeros((7, 7, 14)), grid=S, boxes_per_cell=B, num_classes=C, imgsz=IMG)


def test_prepare_resizes_a_square_image_of_another_size():
    """A square image of another size letterboxes to no padding: it must still be resized (it used to be passed
    through at its own size, which the runtimes refused)."""
    from edgevision.ops.preprocess import prepare

    image = np.zeros((512, 512, 3), np.uint8)
    image[:256] = 255
    out, geometry = prepare(image, 224, "letterbox")
    assert out.shape == (224, 224, 3) and out[:100].min() == 255 and out[130:].max() == 0
    assert geometry.scale_x == geometry.scale_y == 224 / 512 and geometry.pad_x == geometry.pad_y == 0
    same, _ = prepare(out, 224, "letterbox")
    assert same is out
