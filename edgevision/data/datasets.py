"""Eval and calibration data: the synthetic eval set, folders of images, and COCO-format JSON files.

Every loader yields ``Sample`` objects in source-image pixels; preprocessing to the network size happens in
``edgevision.ops.preprocess``, the same code devices run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from edgevision.data.samples import EvalSet, Sample, synthetic_scenes  # noqa: F401  (the loaders' types)
from edgevision.data.synthetic import SceneSpec, render_scene, scene_seeds
from edgevision.errors import BadInput
from edgevision.ops.preprocess import prepare, read_image
from edgevision.resources import resource_dir

log = logging.getLogger("edgevision")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
FEW_CALIBRATION_IMAGES = 100


def synthetic_eval_set(imgsz: int, stride: int, count: int, seed: int, task: str,
                       labels: Sequence[str] | None = None) -> EvalSet:
    """The task's synthetic eval set (``Task.synthetic_eval_set``). Its ground truth is in the task's
    ``synthetic_labels``: for a model with other ``labels`` (ImageNet classes, say) the set is used unlabelled,
    for agreement with the FP32 reference only."""
    from edgevision.tasks import get_task

    t = get_task(task)
    data = t.synthetic_eval_set(imgsz, stride, count, seed)
    if labels is not None and t.synthetic_labels is not None and tuple(labels) != tuple(t.synthetic_labels):
        return EvalSet(f"{data.description}, unlabelled: the model's classes are not the synthetic shapes'",
                       data.samples, labelled=False)
    return data


def list_images(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"{directory}: not a directory of images")
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_folder(directory: Path) -> EvalSet:
    paths = list_images(directory)
    if not paths:
        raise BadInput(f"{directory}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    samples, skipped = [], []
    for p in paths:
        try:
            samples.append(Sample(p.name, read_image(p)))
        except ValueError:
            skipped.append(p)
            log.warning("%s: not a readable image; skipped", p)
    if not samples:
        raise BadInput(f"no readable images in {directory} ({len(skipped)} files skipped); give a folder of "
                       f"JPEG/PNG images")
    note = f", {len(skipped)} unreadable files skipped" if skipped else ""
    return EvalSet(f"{len(samples)} unlabelled images from {directory}{note}", samples, labelled=False)


def _read_or_fail(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ValueError:
        raise BadInput(f"{path}: not a readable image; remove it or convert it to JPEG/PNG") from None


def coco_dataset(json_path: Path, labels: Sequence[str], task: str) -> EvalSet:
    """A COCO-format file; image paths are relative to the JSON, categories are matched to ``labels`` by name.

    For segmentation the instance masks are painted into a label map (label index = position in ``labels``).
    """
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in data["images"]}
        categories = {c["id"]: c["name"] for c in data["categories"]}
        annotations = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{json_path}: not a COCO-format file ({type(e).__name__}: {e})") from None
    from edgevision.tasks import get_task

    needs_masks = get_task(task).needs_masks
    index = {name: i for i, name in enumerate(labels)}
    dropped = sorted({n for n in categories.values() if n not in index})
    if not any(n in index for n in categories.values()):
        raise BadInput(f"{json_path}: none of its categories ({', '.join(sorted(categories.values()))}) is a class "
                       f"of this model ({', '.join(labels)}); pass --labels or another --data")
    by_image: dict[int, list[dict]] = {i: [] for i in images}
    for a in annotations:
        if categories.get(a.get("category_id")) in index and a.get("image_id") in by_image:
            by_image[a["image_id"]].append(a)
    samples = []
    for image_id, im in images.items():
        path = json_path.parent / im["file_name"]
        if not path.is_file():
            raise BadInput(f"{json_path}: image '{im['file_name']}' not found at {path}")
        rgb = _read_or_fail(path)
        anns = [a for a in by_image[image_id] if not a.get("iscrowd", 0)]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        cls = np.array([index[categories[a["category_id"]]] for a in anns], np.int64)
        semantic = _paint_masks(anns, cls, rgb.shape[:2]) if needs_masks else None
        samples.append(Sample(path.name, rgb, boxes, cls, semantic))
    if dropped:
        log.warning("%s: categories not in the model's labels are ignored: %s", json_path, ", ".join(dropped))
    return EvalSet(f"{len(samples)} images from {json_path}", samples, labelled=True, dropped_categories=tuple(dropped))


def _paint_masks(anns: list[dict], cls: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from faster_coco_eval.core import mask as mask_utils

    h, w = hw
    out = np.zeros((h, w), np.uint8)
    for a, c in sorted(zip(anns, cls), key=lambda t: -float(t[0].get("area", 0))):  # small objects on top
        seg = a.get("segmentation")
        if not seg:
            continue
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        out[mask_utils.decode(rle).astype(bool)] = c
    return out


def load_eval_set(data: str | Path | None, *, scene_size: int, stride: int, task: str, labels: Sequence[str],
                  count: int, seed: int) -> EvalSet:
    """``--data``: None (synthetic scenes of side ``scene_size``), a directory (unlabelled images) or a COCO .json
    file; or what the task reads itself (a tracker's clip folders)."""
    if data is None:
        return synthetic_eval_set(scene_size, stride, count, seed, task, labels)
    path = Path(data)
    from edgevision.tasks import get_task

    custom = get_task(task).eval_set_from(path)
    if custom is not None:
        return custom
    if path.is_dir():
        return image_folder(path)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise BadInput(f"{path}: no such file")
        return coco_dataset(path, labels, task)
    raise BadInput(f"--data {path}: give a directory of images or a COCO .json file")


# ------------------------------------------------------------------------------------------------ calibration
@dataclass
class CalibrationSet:
    batches: list[np.ndarray]  # each (1, S, S, 3) uint8, preprocessed like the runtime does
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.batches)


def calibration_set(calib_dir: Path | None, imgsz: int, stride: int, resize: str, limit: int = 300,
                    scene_size: int | None = None) -> CalibrationSet:
    """The user's images, or the default set: synthetic scenes from calibration/synthetic.yaml (of side
    ``scene_size``, default ``imgsz``) plus calibration/images/; each resized to ``imgsz``."""
    digest = hashlib.sha256()
    images: list[np.ndarray] = []
    if calib_dir is not None:
        paths = list_images(Path(calib_dir))
        if not paths:
            raise BadInput(f"--calib {calib_dir}: no images found; pass a folder of JPEG/PNG images")
        if len(paths) < FEW_CALIBRATION_IMAGES:
            log.warning("--calib %s: only %d images; INT8 ranges are more reliable with %d or more",
                        calib_dir, len(paths), FEW_CALIBRATION_IMAGES)
        skipped = 0
        for p in paths:
            if len(images) >= limit:
                break
            try:
                images.append(read_image(p))
            except ValueError:
                skipped += 1
                log.warning("--calib: %s is not a readable image; skipped", p)
                continue
            digest.update(p.read_bytes())
        if not images:
            raise BadInput(f"--calib {calib_dir}: no readable images ({skipped} files skipped); pass a folder of "
                           f"JPEG/PNG images")
        source = str(calib_dir) + (f" ({skipped} unreadable files skipped)" if skipped else "")
    else:
        root = resource_dir("calibration")
        spec_path = root / "synthetic.yaml"
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
        digest.update(spec_path.read_bytes())
        side = scene_size or imgsz
        digest.update(str(imgsz if side == imgsz else (imgsz, side)).encode())
        scene = SceneSpec(size=(side, side), grid=max(1, side // stride),
                          letterbox_prob=float(spec.get("letterbox_prob", 0.0)))
        for s in scene_seeds(int(spec.get("seed", 7)), int(spec.get("count", 100))):
            images.append(render_scene(s, scene).image)
        for p in list_images(root / "images"):
            digest.update(p.read_bytes())
            images.append(read_image(p))
        source = "default (calibration/)"
    batches = [np.ascontiguousarray(prepare(im, imgsz, resize)[0][None]) for im in images[:limit]]
    return CalibrationSet(batches, source, digest.hexdigest())

