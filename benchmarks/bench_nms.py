"""NMS per call: edgevision's non_max_suppression vs bare ONNX Runtime NonMaxSuppression vs
cv2.dnn.NMSBoxesBatched vs greedy NumPy, side by side in one process; plus the YOLOv1 grid decode.

    python benchmarks/bench_nms.py [--repeats 3000]

Cases follow the issue: 98 YOLOv1 candidates (75 above 0.1), 444 boxes, 1323 boxes. Every method gets the same
boxes; "bare ORT" is the kernel call alone on inputs already prepared (class offsets applied), i.e. the floor
edgevision's wrapper can approach.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from edgevision.ops.nms import _cache, non_max_suppression
from edgevision.ops.yolo import decode_yolov1


def greedy_numpy(boxes, scores, classes, iou_thr):
    """Reference greedy class-aware NMS, the loop a user would write."""
    offs = boxes + (classes * (boxes.max() + 1))[:, None]
    order = np.argsort(-scores)
    keep = []
    areas = (offs[:, 2] - offs[:, 0]) * (offs[:, 3] - offs[:, 1])
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(offs[i, 0], offs[order[1:], 0])
        yy1 = np.maximum(offs[i, 1], offs[order[1:], 1])
        xx2 = np.minimum(offs[i, 2], offs[order[1:], 2])
        yy2 = np.minimum(offs[i, 3], offs[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= iou_thr]
    return np.array(keep)


def make_case(rng, n, above, classes=20, span=640):
    xy = rng.uniform(0, span - 60, (n, 2))
    wh = rng.uniform(8, 160, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = np.concatenate([rng.uniform(0.1, 1.0, above), rng.uniform(0.0, 0.1, n - above)]).astype(np.float32)
    return boxes, scores, rng.integers(0, classes, n)


def timeit(fn, repeats):
    fn()
    best = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best.append((time.perf_counter() - t0) / repeats)
    return min(best) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("case | bare ORT NMS | edgevision NMS | ratio to bare | cv2.dnn.NMSBoxesBatched | NumPy greedy")
    print("---|---|---|---|---|---")
    for label, n, above in (("98 YOLOv1 candidates (75 above 0.1)", 98, 75), ("444 boxes", 444, 444),
                            ("1323 boxes", 1323, 1323)):
        boxes, scores, classes = make_case(rng, n, above)
        sel = scores > 0.1
        b, s, c = boxes[sel], scores[sel], classes[sel]
        shifted = b + (c.astype(np.float32) * (b.max() + 1))[:, None]
        sess = _cache().session
        feeds = {"boxes": shifted[None], "scores": s[None, None], "max_output": np.array([300], np.int64),
                 "iou_threshold": np.array([0.45], np.float32)}
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)
        xywh_list, s_list, c_list = xywh.tolist(), s.tolist(), c.tolist()
        r = args.repeats
        bare = timeit(lambda: sess.run(None, feeds), r)
        ours = timeit(lambda: non_max_suppression(boxes, scores, classes, iou_threshold=0.45, score_threshold=0.1,
                                                  max_detections=300), r)
        ocv = timeit(lambda: cv2.dnn.NMSBoxesBatched(xywh_list, s_list, c_list, 0.0, 0.45), max(r // 4, 50))
        npy = timeit(lambda: greedy_numpy(b, s, c, 0.45), max(r // 4, 50))
        same = set(non_max_suppression(boxes, scores, classes, iou_threshold=0.45, score_threshold=0.1,
                                       max_detections=10_000).tolist()) == set(np.flatnonzero(sel)[greedy_numpy(b, s, c, 0.45)].tolist())
        print(f"{label} | {bare:.1f} us | {ours:.1f} us | {ours / bare:.2f}x | {ocv:.1f} us | {npy:.1f} us"
              f"{'' if same else ' (KEPT SETS DIFFER)'}")
    pred = np.random.default_rng(1).random((7, 7, 30)).astype(np.float32)
    dec = timeit(lambda: decode_yolov1(pred, grid=7, boxes_per_cell=2, num_classes=20, imgsz=448,
                                       score_threshold=0.1), args.repeats)
    print(f"\nYOLOv1 grid decode (7x7x30, threshold 0.1): {dec:.1f} us per call")


if __name__ == "__main__":
    main()
