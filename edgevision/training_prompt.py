"""Training of the promptable-segmentation demo (``efficient-sam-demo``) on procedural scenes with exact instance
masks (see scripts/train_demo_weights.py).

Each step encodes a batch of scenes once and decodes several prompts per scene, sampled per object the way a
user prompts: the innermost point or a random point of the object, a few points with background clicks, its box
(exact or loosened), or a box with a point. As in SAM, every prompt is scored against all three multimask outputs
and only the best one takes the mask loss (focal + dice at the input resolution); the IoU head learns every
output's actual IoU, which is how the mask is chosen at inference.

Resumable and deterministic by seed, like ``training.train_classifier``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.models.registry import ModelVariant
from edgevision.ops.prompts import BACKGROUND, BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, FOREGROUND, PAD, point_inside
from edgevision.training import _batches, _load_checkpoint, _save_checkpoint, normalise, pool_seed_base, \
    seeded_model, set_lr


def _render_instances(args: tuple[list[int], SceneSpec]) -> tuple[np.ndarray, list[np.ndarray]]:
    seeds, spec = args
    images, masks = [], []
    for s in seeds:
        scene = render_scene(s, spec)
        images.append(scene.image)
        masks.append(np.packbits(scene.masks, axis=-1))  # (G, H, W/8): a pool of thousands stays small
    return np.stack(images), masks


def render_instance_pool(count: int, imgsz: int, stride: int, pool_seed: int = 0,
                         workers: int = 2) -> tuple[np.ndarray, list[np.ndarray]]:
    """``count`` training scenes at ``imgsz`` with bit-packed instance masks; seeds disjoint from every eval set."""
    spec = SceneSpec(size=(imgsz, imgsz), grid=max(1, imgsz // stride))
    base = pool_seed_base(pool_seed)
    chunks = [list(range(base + i, base + min(i + 128, count))) for i in range(0, count, 128)]
    images, masks = [], []
    with ProcessPoolExecutor(workers) as pool:
        for im, mk in pool.map(_render_instances, [(c, spec) for c in chunks]):
            images.append(im)
            masks += mk
    return np.concatenate(images), masks


def sample_prompt(mask: np.ndarray, rng: np.random.Generator, slots: int,
                  loose_box_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One training prompt for an object's (H, W) bool mask -> coords (slots, 2), labels (slots,) in pixels.

    ``loose_box_share`` of the box prompts are loosened as a hand-dragged box is; the rest are tight, as a
    detector's box (``--prompts-from``) and the box evaluation are. The random draws do not depend on it."""
    h, w = mask.shape
    coords = np.full((slots, 2), -1.0, np.float32)
    labels = np.full(slots, float(PAD), np.float32)
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1

    def inside() -> tuple[float, float]:
        k = rng.integers(len(xs))
        return xs[k] + 0.5, ys[k] + 0.5

    r = rng.random()
    if r < 0.35:  # one click: the innermost point (what evaluation uses) or anywhere on the object
        coords[0] = point_inside(mask) if rng.random() < 0.5 else inside()
        labels[0] = FOREGROUND
    elif r < 0.55:  # a few clicks, some on the background
        n = int(rng.integers(2, 4))
        for i in range(n):
            if i == 0 or rng.random() < 0.5:
                coords[i], labels[i] = inside(), FOREGROUND
            else:
                out_y, out_x = np.nonzero(~mask)
                k = rng.integers(len(out_x))
                coords[i], labels[i] = (out_x[k] + 0.5, out_y[k] + 0.5), BACKGROUND
    else:  # a box, exact or loosened as a user drags it; sometimes with a click
        box = np.array([x0, y0, x1, y1], np.float32)
        if rng.random() < loose_box_share:
            side = max(x1 - x0, y1 - y0)
            box += rng.normal(0, 0.06 * side, 4).astype(np.float32)
            box = np.clip(box, 0, [w, h, w, h])
        coords[0], coords[1] = box[:2], box[2:]
        labels[0], labels[1] = BOX_TOP_LEFT, BOX_BOTTOM_RIGHT
        if r > 0.9:
            coords[2], labels[2] = inside(), FOREGROUND
    return coords, labels


def focal_dice(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """SAM's mask loss per output: 20 x focal + dice. logits (..., H, W), target (..., H, W) in {0, 1}
    -> (...)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    focal = (ce * (1 - pt) ** gamma * (alpha * target + (1 - alpha) * (1 - target))).flatten(-2).mean(-1)
    inter = (p * target).flatten(-2).sum(-1)
    dice = 1 - (2 * inter + 1) / (p.flatten(-2).sum(-1) + target.flatten(-2).sum(-1) + 1)
    return 20 * focal + dice


def prompt_loss(model, images: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                per_image: int) -> tuple[torch.Tensor, dict[str, float]]:
    """images (B, 3, S, S); coords (B*P, slots, 2), labels (B*P, slots), targets (B*P, S, S) -> loss and stats."""
    emb = model.embed(images).repeat_interleave(per_image, dim=0)
    low, iou_pred = model.decode(emb, coords, labels)  # (B*P, 3, m, m), (B*P, 3)
    size = targets.shape[-1]
    up = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    tgt = targets.unsqueeze(1).expand_as(up)
    per_output = focal_dice(up, tgt)  # (B*P, 3)
    best = per_output.argmin(1)
    mask_loss = per_output.gather(1, best[:, None]).mean()
    with torch.no_grad():
        hard = up > 0
        inter = (hard & (tgt > 0.5)).flatten(2).sum(-1).float()
        union = (hard | (tgt > 0.5)).flatten(2).sum(-1).float()
        actual = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    iou_loss = F.mse_loss(iou_pred, actual)
    chosen = actual.gather(1, iou_pred.argmax(1, keepdim=True)).mean().item()
    return mask_loss + iou_loss, {"mask": mask_loss.item(), "iou": iou_loss.item(), "chosen_iou": chosen}


def train_prompt_segmenter(variant: ModelVariant, *, steps: int, pool_size: int, batch: int, lr: float,
                           checkpoint: Path, per_image: int = 4, seed: int = 0, resume: bool = True,
                           warmup: int = 200, stop_after: int | None = None, init: Path | None = None,
                           pool_seed: int = 0, loose_box_share: float = 0.5,
                           log: Callable[[str], None] = print) -> torch.nn.Module:
    """Train ``variant`` (an EfficientSam) from scratch or from ``init`` weights; resumable from ``checkpoint``
    (every 100 steps, atomically), continuing exactly as an uninterrupted run would. ``loose_box_share``: see
    ``sample_prompt``. It trains on scenes of the variant's scene size, at that input size, and returns the model
    set to the variant's input size (``efficient-sam-demo`` trains at 256 px and runs at 512)."""
    if not 0.0 <= loose_box_share <= 1.0:
        raise ValueError(f"loose_box_share must be in [0, 1], got {loose_box_share}")
    checkpoint = Path(checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    model, _ = seeded_model(variant, seed, init)
    imgsz, slots = variant.scenes_at(variant.imgsz), 6
    model.set_input_size(imgsz)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    step = _load_checkpoint(checkpoint, model, None, opt, rng, log) if resume and checkpoint.is_file() else 0
    log(f"rendering {pool_size} training scenes at {imgsz}px")
    images, packed = render_instance_pool(pool_size, imgsz, variant.stride, pool_seed)
    batches = _batches(len(images), batch, np.random.default_rng(seed + 1))
    for _ in range(step):
        next(batches)
    model.train()
    start, done_at_start = time.perf_counter(), step
    window: list[dict[str, float]] = []
    while step < min(steps, stop_after or steps):
        idx = next(batches)
        set_lr(opt, lr, step, steps, warmup)
        coords, labels, targets = [], [], []
        im = images[idx].copy()
        for j, i in enumerate(idx):
            masks = np.unpackbits(packed[i], axis=-1, count=imgsz).astype(bool)
            masks = masks[masks.reshape(len(masks), -1).any(1)]
            flip = rng.random() < 0.5
            if flip:
                im[j] = im[j, :, ::-1]
                masks = masks[:, :, ::-1]
            for k in rng.integers(0, len(masks), per_image):
                c, lab = sample_prompt(masks[k], rng, slots, loose_box_share)
                coords.append(c)
                labels.append(lab)
                targets.append(masks[k])
        loss, stats = prompt_loss(model, normalise(np.ascontiguousarray(im), variant),
                                  torch.from_numpy(np.stack(coords)), torch.from_numpy(np.stack(labels)),
                                  torch.from_numpy(np.stack(targets).astype(np.float32)), per_image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window.append({"loss": loss.item(), **stats})
        step += 1
        if step % 100 == 0 or step in (steps, stop_after):
            elapsed = time.perf_counter() - start
            _save_checkpoint(checkpoint, model, None, opt, step, rng)
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            log(f"step {step}/{steps} lr {opt.param_groups[0]['lr']:.2e} loss {mean['loss']:.4f} (mask "
                f"{mean['mask']:.4f}, iou {mean['iou']:.4f}) train IoU of the chosen mask {100 * mean['chosen_iou']:.1f} "
                f"({(step - done_at_start) * batch / elapsed:.1f} img/s, {elapsed / 60:.1f} min)")
            window.clear()
    model.eval()
    model.set_input_size(variant.imgsz)
    return model
