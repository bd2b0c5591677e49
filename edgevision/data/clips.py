"""Clip folders: video frames with per-object masks, for `check --data` and calibration of a tracker.

A clip is a folder with ``frames/`` (images, in name order) and ``masks/`` (one PNG per frame, same stem, DAVIS
style: pixel value k > 0 is object k, 0 is background; a palette PNG's indices are the values). Every object on
the first frame's mask is prompted there with its tight box; masks of later frames, when present, are the
ground truth of J&F (all frames or none after the first). ``--data`` is a clip folder or a folder of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevision.data.samples import EvalSet
from edgevision.errors import BadInput


@dataclass
class ClipSample:
    """A clip with ground truth: ``frames`` (T, H, W, 3) uint8 RGB, ``masks`` (T, K, H, W) bool (what is visible
    of each object), and the objects to prompt on frame 0 (indices into K)."""

    name: str
    frames: np.ndarray
    masks: np.ndarray | None
    prompted: tuple[int, ...] = (0,)

    def box(self, k: int, t: int = 0) -> tuple[int, int, int, int] | None:
        ys, xs = np.nonzero(self.masks[t, k])
        if not len(xs):
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_OBJECTS = 8


def is_clip_folder(path: Path) -> bool:
    return (Path(path) / "frames").is_dir()


def clip_folders(path: Path) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: not a directory; give a clip folder (frames/ and masks/) or a folder of them")
    if is_clip_folder(path):
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and is_clip_folder(p))
    if not found:
        raise BadInput(f"{path}: no clip folders in it; a clip is a folder with frames/ (images) and masks/ "
                       f"(one index PNG per frame, value k for object k)")
    return found


def _read_index_mask(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            mask = np.array(im if im.mode in ("P", "L", "I", "I;16") else im.convert("L"))
    except OSError as e:
        raise BadInput(f"{path}: not a readable mask PNG ({e.__class__.__name__})") from None
    return mask.astype(np.int32)


def load_clip(folder: Path) -> ClipSample:
    folder = Path(folder)
    frames_dir, masks_dir = folder / "frames", folder / "masks"
    paths = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file())
    if not paths:
        raise BadInput(f"{frames_dir}: no frames (looked for {', '.join(sorted(FRAME_SUFFIXES))})")
    frames = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BadInput(f"{p}: not a readable image")
        if frames and bgr.shape != frames[0].shape:
            raise BadInput(f"{p}: {bgr.shape[1]}x{bgr.shape[0]}, but the clip's first frame is "
                           f"{frames[0].shape[1]}x{frames[0].shape[0]}; every frame of a clip has one size")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    labelled = [masks_dir / f"{p.stem}.png" for p in paths]
    present = [m.is_file() for m in labelled]
    if not present[0]:
        raise BadInput(f"{masks_dir / (paths[0].stem + '.png')}: missing; the first frame's mask says which objects "
                       f"to track (value k for object k)")
    if any(present[1:]) and not all(present):
        missing = labelled[present.index(False)]
        raise BadInput(f"{missing}: missing; give a mask for every frame, or for the first frame only")
    index = [_read_index_mask(m) for m, ok in zip(labelled, present) if ok]
    h, w = frames[0].shape[:2]
    for m, arr in zip(labelled, index):
        if arr.shape != (h, w):
            raise BadInput(f"{m}: {arr.shape[1]}x{arr.shape[0]}, but the frames are {w}x{h}")
    ids = [int(v) for v in np.unique(index[0]) if v > 0]
    if not ids:
        raise BadInput(f"{labelled[0]}: no object in it (all zero); mark each object to track with its own value")
    if len(ids) > MAX_OBJECTS:
        raise BadInput(f"{labelled[0]}: {len(ids)} objects; at most {MAX_OBJECTS} are tracked at once")
    masks = np.stack([np.stack([arr == k for k in ids]) for arr in index])  # (T or 1, K, H, W)
    return ClipSample(folder.name, np.stack(frames), masks, tuple(range(len(ids))))


def load_clips(path: Path) -> list[ClipSample]:
    return [load_clip(f) for f in clip_folders(path)]


def clip_eval_set(path: Path) -> EvalSet:
    clips = load_clips(path)
    labelled = all(len(c.masks) == len(c.frames) for c in clips)
    frames = sum(len(c.frames) for c in clips)
    return EvalSet(f"{path} ({len(clips)} clips, {frames} frames)", clips, labelled=labelled)


def write_clip(folder: Path, frames: np.ndarray, masks: np.ndarray | None = None, every_mask: bool = True) -> Path:
    """Write a clip folder: ``frames`` (T, H, W, 3) RGB as JPEG, ``masks`` (T, K, H, W) bool as index PNGs
    (object k as value k + 1; a later object covers an earlier one). Written beside and renamed into place."""
    folder = Path(folder)
    if folder.exists():
        raise BadInput(f"{folder}: already exists; give a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "frames").mkdir()
        (tmp / "masks").mkdir()
        for t, frame in enumerate(frames):
            cv2.imwrite(str(tmp / "frames" / f"{t:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            if masks is not None and (every_mask or t == 0):
                index = np.zeros(frame.shape[:2], np.uint8)
                for k, m in enumerate(masks[t]):
                    index[m] = k + 1
                cv2.imwrite(str(tmp / "masks" / f"{t:05d}.png"), index)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
