"""Prompts in, masks out: the NumPy side of promptable segmentation, checked against independent computations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevision.ops.preprocess import Geometry, prepare
from edgevision.ops.prompts import Prompt, encode_prompt, encode_prompts, grid_prompts, make_prompt, mask_box, \
    mask_iou, mask_to_source, point_inside
from edgevision.ops.results import PromptMasks
from edgevision.tasks.prompt_segment import PromptMaskAccumulator, PromptMaskPostprocessor, decode_prompts, \
    eval_prompts


def letterbox_geometry(src_w: int, src_h: int, imgsz: int) -> Geometry:
    _, g = prepare(np.zeros((src_h, src_w, 3), np.uint8), imgsz, "letterbox")
    return g


@pytest.mark.parametrize("kwargs, message", [
    ({"points": [(10, 10)], "labels": [1, 0]}, "1 point(s) but 2 label(s)"),
    ({"points": [(10, 10)], "labels": [2]}, "1 (foreground) or 0 (background)"),
    ({"box": (50, 10, 40, 30)}, "needs x1 > x0"),
    ({"box": (1, 2, 3)}, "x0,y0,x1,y1"),
    ({}, "at least one point or a box"),
    ({"points": [(700, 10)], "size": (640, 480)}, "outside the 640x480 image"),
    ({"box": (0, 0, 100, 500), "size": (640, 480)}, "outside the 640x480 image"),
    ({"points": [(1, 1)] * 5, "box": (0, 0, 5, 5), "slots": 6}, "need 7 slots; the decoder takes at most 6"),
])
def test_bad_prompts_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_prompt(**kwargs)


def test_prompt_kinds_and_slots():
    assert make_prompt([(1, 2)]).kind == "point"
    assert make_prompt([(1, 2), (3, 4)], [1, 0]).kind == "points"
    assert make_prompt(box=(0, 0, 5, 5)).kind == "box" and make_prompt(box=(0, 0, 5, 5)).slots() == 2
    assert make_prompt([(1, 2)], box=(0, 0, 5, 5)).kind == "box+points"


def test_encoding_maps_source_pixels_through_the_letterbox_and_back():
    g = letterbox_geometry(640, 480, 256)  # scale 0.4, pad 32 rows on top
    prompt = make_prompt([(320, 240), (0, 0)], [1, 0], box=(100, 50, 600, 400), size=(640, 480))
    coords, labels = encode_prompt(prompt, g, 6)
    assert coords.shape == (1, 6, 2) and labels.shape == (1, 6) and coords.dtype == np.float32
    np.testing.assert_allclose(coords[0, 0], [128, 96 + 32], atol=1e-4)
    np.testing.assert_allclose(coords[0, 2:4], [[40, 20 + 32], [240, 160 + 32]], atol=1e-4)
    assert labels[0].tolist() == [1, 0, 2, 3, -1, -1]
    assert (coords[0, 4:] == -1).all()  # empty slots padded as the official code pads them
    back = decode_prompts(coords, labels, g, 1)[0]
    np.testing.assert_allclose(back.points, prompt.points, atol=1e-3)
    np.testing.assert_allclose(back.box, prompt.box, atol=1e-3)
    assert back.labels == prompt.labels
    many_c, many_l = encode_prompts([prompt, make_prompt([(5, 5)])], g, 6)
    assert many_c.shape == (2, 6, 2) and many_l[1].tolist() == [1, -1, -1, -1, -1, -1]
    assert encode_prompts([], g, 6)[0].shape == (0, 6, 2)


def test_point_inside_is_the_innermost_pixel_and_lies_in_the_mask():
    rect = np.zeros((50, 80), bool)
    rect[10:31, 20:61] = True  # 41 x 21: the centre column 40, row 20
    x, y = point_inside(rect)
    assert (x, y) == (40.5, 20.5)
    ring = np.zeros((60, 60), bool)  # an L shape: the centroid is outside it, the inside point is not
    ring[5:55, 5:20] = True
    ring[40:55, 5:55] = True
    x, y = point_inside(ring)
    assert ring[int(y), int(x)]
    edge = np.zeros((20, 20), bool)
    edge[:, :3] = True  # touching the border: the border counts as outside, so the middle column wins
    assert point_inside(edge)[0] == 1.5
    with pytest.raises(ValueError, match="empty mask"):
        point_inside(np.zeros((4, 4), bool))


def test_mask_to_source_matches_the_official_upsample_crop_upsample():
    """SAM's postprocess_masks upsamples the logits to the input size, crops the padding and resizes to the
    source; mask_to_source crops at low resolution and resizes once. They agree up to the border pixels."""
    rng = np.random.default_rng(0)
    imgsz, m = 256, 64
    g = letterbox_geometry(640, 400, imgsz)
    yy, xx = np.mgrid[:m, :m]
    logits = (12.0 - np.hypot(xx - 30, yy - 33)).astype(np.float32) + rng.normal(0, 0.3, (m, m)).astype(np.float32)
    ours = mask_to_source(logits, g, imgsz)
    full = cv2.resize(logits, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
    top, left = int(round(g.pad_y)), int(round(g.pad_x))
    crop = full[top : top + int(round(g.src_h * g.scale_y)), left : left + int(round(g.src_w * g.scale_x))]
    official = cv2.resize(crop, (g.src_w, g.src_h), interpolation=cv2.INTER_LINEAR) > 0
    assert ours.shape == (400, 640) and ours.dtype == bool
    assert mask_iou(ours, official) > 0.97
    assert mask_box(ours) is not None and mask_box(np.zeros((3, 3), bool)) is None


def test_mask_iou_and_box():
    a = np.zeros((10, 10), bool)
    a[2:6, 3:8] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 3:8] = True
    assert mask_iou(a, b) == pytest.approx(10 / 30)
    assert mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert mask_box(a) == (3.0, 2.0, 8.0, 6.0)


def test_postprocessor_keeps_the_mask_with_the_highest_predicted_iou():
    imgsz, m = 64, 16
    low = np.full((2, 3, m, m), -5.0, np.float32)
    low[0, 1, :8] = 5.0  # prompt 0's chosen output: the top half
    low[1, 2, :, :8] = 5.0  # prompt 1's: the left half
    iou = np.array([[0.1, 0.9, 0.2], [0.3, 0.1, 0.8]], np.float32)
    g = Geometry(1.0, 1.0, 0.0, 0.0, imgsz, imgsz)
    coords, labels = encode_prompts([make_prompt([(10, 10)]), make_prompt(box=(1, 2, 30, 40))], g, 6)
    post = PromptMaskPostprocessor({"kind": "prompt-masks"}, imgsz)
    out = post({"low_res_masks": low, "iou_predictions": iou, "point_coords": coords, "point_labels": labels}, g)
    assert out.masks.shape == (2, 64, 64) and out.scores.tolist() == pytest.approx([0.9, 0.8])
    assert out.masks[0, :30].all() and not out.masks[0, 34:].any()
    assert out.masks[1, :, :30].all() and not out.masks[1, :, 34:].any()
    rows = out.to_json()
    assert rows[0]["kind"] == "point" and rows[1]["kind"] == "box" and rows[1]["box"] == [0, 0, 32, 64]
    assert rows[1]["prompt"] == {"box": [1.0, 2.0, 30.0, 40.0]} and rows[0]["prompt"]["points"] == [[10.0, 10.0]]
    with pytest.raises(ValueError, match=r"\(K, 3, m, m\)"):
        post({"low_res_masks": low[0], "iou_predictions": iou}, g)


class _Sample:
    def __init__(self, masks):
        self.masks = masks
        self.image = np.zeros((*masks.shape[1:], 3), np.uint8)


def test_accumulator_scores_point_and_box_prompts_against_ground_truth_and_the_reference():
    truth = np.zeros((2, 32, 32), bool)
    truth[0, 2:10, 2:10] = True
    truth[1, 15:30, 12:28] = True
    sample = _Sample(truth)
    prompts = eval_prompts(sample)
    assert [p.kind for p in prompts] == ["point", "box", "point", "box"]
    assert prompts[1].box == (2.0, 2.0, 10.0, 10.0)
    half = truth[0].copy()
    half[6:] = False  # the first object's point prompt finds only half of it
    masks = np.stack([half, truth[0], truth[1], truth[1]])
    result = PromptMasks(masks, np.ones(4, np.float32), prompts, np.full((4, 3), 0.5, np.float32))
    acc = PromptMaskAccumulator()
    acc.add(sample, result)
    out = acc.result()
    assert out["miou_box"] == pytest.approx(100.0)
    assert out["miou_point"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    agree = PromptMaskAccumulator()
    other = PromptMasks(np.stack([truth[0]] * 4), np.ones(4, np.float32), prompts, np.full((4, 3), 0.6, np.float32))
    agree.add(result, other)
    out = agree.result()
    assert out["iou_prediction_mae"] == pytest.approx(10.0, abs=1e-4)
    assert out["mask_iou"] == pytest.approx(100 * (0.5 + 1 + 0 + 0) / 4)


def test_grid_prompts_cover_the_image():
    grid = grid_prompts(640, 480, 8)
    assert len(grid) == 64 and grid[0].points == ((40.0, 30.0),) and grid[-1].points == ((600.0, 450.0),)
    assert all(isinstance(p, Prompt) and p.kind == "point" for p in grid)
