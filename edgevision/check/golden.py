"""Golden reference data stored in the bundle, so `check` works on a device that has no PyTorch.

At export: a fixed set of eval inputs (uint8, at the model's input size) and the FP32 PyTorch outputs for
them: fp16 for small outputs, and for segmentation maps the argmax plus the winning class's probability.
On the device: the artifact runs on the same inputs and is compared output by output (cosine, max abs error,
SQNR) and by the task's agreement metric (agreement mAP@0.5 for detection, agreement mIoU for segmentation).
What is stored, and how it is compared, is the task's (``Task.golden_arrays`` and friends).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from edgevision.check.metrics import OutputSimilarity
from edgevision.tasks import get_task

GOLDEN_FILE = "golden.npz"
GOLDEN_BUDGET_BYTES = 5_000_000
DEFAULT_GOLDEN_COUNT = 32


def write_golden(path: Path, task: str, inputs: np.ndarray, outputs: list[np.ndarray]) -> dict:
    """Save, dropping samples until the compressed file fits the budget; returns what was stored."""
    n = len(inputs)
    while True:
        buf = io.BytesIO()
        np.savez_compressed(buf, inputs=inputs[:n], **get_task(task).golden_arrays([o[:n] for o in outputs]))
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


def compare_golden(runner, meta, golden: dict[str, np.ndarray], recipe) -> dict:
    """Run the artifact on the golden inputs; per-output similarity and the task's agreement metric."""
    task = get_task(meta.task)
    inputs = golden["inputs"]
    sim = OutputSimilarity()
    post = task.make_postprocessor(meta.head, meta.imgsz, **task.eval_options(recipe))
    agreement = task.accumulator(meta.labels, recipe)
    for i in range(len(inputs)):
        outputs = runner.run(inputs[i : i + 1])
        sim.add(*task.golden_similarity(golden, i, outputs))
        agreement.add(*task.golden_results(golden, i, outputs, post))
    base, key = task.agreement
    return {"samples": int(len(inputs)), "output_similarity": sim.result([o.name for o in meta.outputs]),
            "agreement": {key: agreement.result()[base]}}
