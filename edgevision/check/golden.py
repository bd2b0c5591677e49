"""Golden reference data stored in the bundle, so `check` works on a device that has no PyTorch.

At export: a fixed set of eval inputs (uint8, at the model's input size) and the FP32 PyTorch outputs for
them: fp16 for small outputs, and for segmentation maps the argmax plus the winning class's probability.
On the device: the artifact runs on the same inputs and is compared output by output (cosine, max abs error,
SQNR) and by task metric (agreement mAP@0.5 for detection, agreement mIoU for segmentation).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from edgevision.check.metrics import OutputSimilarity
from edgevision.ops.postprocess import make_postprocessor

GOLDEN_FILE = "golden.npz"
GOLDEN_BUDGET_BYTES = 5_000_000
DEFAULT_GOLDEN_COUNT = 32


def _softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """(N, C, H, W) logits -> (N, H, W) probability of the argmax class."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return (1.0 / e.sum(1)).astype(np.float32)  # exp(0) / sum


def reduce_outputs(task: str, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What is stored (or compared) per output: small outputs whole, label maps as argmax + confidence."""
    reduced = {}
    for k, out in enumerate(outputs):
        if task == "segment" and out.ndim == 4:
            reduced[f"argmax_{k}"] = out.argmax(1).astype(np.uint8)
            reduced[f"confidence_{k}"] = _softmax_confidence(out).astype(np.float16)
        else:
            reduced[f"output_{k}"] = out.astype(np.float16)
    return reduced


def write_golden(path: Path, task: str, inputs: np.ndarray, outputs: list[np.ndarray]) -> dict:
    """Save, dropping samples until the compressed file fits the budget; returns what was stored."""
    n = len(inputs)
    while True:
        buf = io.BytesIO()
        np.savez_compressed(buf, inputs=inputs[:n], **reduce_outputs(task, [o[:n] for o in outputs]))
        if buf.tell() <= GOLDEN_BUDGET_BYTES or n <= 4:
            break
        n = max(4, int(n * GOLDEN_BUDGET_BYTES / buf.tell() * 0.95))
    Path(path).write_bytes(buf.getvalue())
    return {"file": GOLDEN_FILE, "samples": n, "bytes": buf.tell()}


def load_golden(bundle_path: Path) -> dict[str, np.ndarray] | None:
    path = Path(bundle_path) / GOLDEN_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


def compare_golden(runner, meta, golden: dict[str, np.ndarray], agreement_score: float = 0.25) -> dict:
    """Run the artifact on the golden inputs; per-output similarity and the task's agreement metric."""
    from edgevision.check.metrics import confusion_matrix, detection_map, segmentation_scores

    inputs = golden["inputs"]
    sim = OutputSimilarity()
    names = [o.name for o in meta.outputs]
    post = make_postprocessor(meta.head, meta.imgsz, **({"conf": 0.001, "iou": 0.45} if meta.task == "detect" else {}))
    art_dets, gt_boxes, gt_labels = [], [], []
    conf = np.zeros((len(meta.labels),) * 2, np.int64)
    for i in range(len(inputs)):
        outputs = runner.run(inputs[i : i + 1])
        art = reduce_outputs(meta.task, outputs)
        if meta.task == "segment":
            ref_pairs = [golden[f"confidence_{k}"][i : i + 1].astype(np.float32) for k in range(len(outputs))]
            art_pairs = [art[f"confidence_{k}"].astype(np.float32) for k in range(len(outputs))]
            sim.add(ref_pairs, art_pairs)
            conf += confusion_matrix(golden["argmax_0"][i], art["argmax_0"][0], len(meta.labels))
        else:
            ref_out = [golden[f"output_{k}"][i : i + 1].astype(np.float32) for k in range(len(outputs))]
            sim.add(ref_out, outputs)
            if meta.task == "detect":
                ref = post([o[0] for o in ref_out])
                keep = ref.scores >= agreement_score
                gt_boxes.append(ref.boxes[keep])
                gt_labels.append(ref.class_ids[keep])
                art_dets.append(post([o[0] for o in outputs]))
    result = {"samples": int(len(inputs)), "output_similarity": sim.result(names)}
    if meta.task == "detect":
        result["agreement"] = {"agreement_map50": detection_map(gt_boxes, gt_labels, art_dets, len(meta.labels))["map50"]}
    elif meta.task == "segment":
        result["agreement"] = {"agreement_miou": segmentation_scores(conf)["miou"]}
    return result
