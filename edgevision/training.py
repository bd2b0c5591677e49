"""Training of the bundled demo weights on procedural scenes (see scripts/train_demo_weights.py).

Deterministic by seed: scenes come from ``render_scene(seed)`` and torch is seeded before init.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.tasks import get_task
from edgevision.models.registry import ModelVariant

TRAIN_SEED_BASE = 10_000_000  # eval sets use small base seeds, training never overlaps them
POOL_SEED_STRIDE = 1_000_000  # pools of different training seeds are disjoint up to this many scenes


def pool_seed_base(pool_seed: int) -> int:
    """The first scene seed of training pool ``pool_seed``: disjoint from every eval set and every other pool."""
    return TRAIN_SEED_BASE + pool_seed * POOL_SEED_STRIDE


def _render_batch(args: tuple[list[int], SceneSpec, bool]) -> tuple[np.ndarray, list, list, np.ndarray | None]:
    seeds, spec, want_semantic = args
    images, boxes, labels, sem = [], [], [], []
    for s in seeds:
        scene = render_scene(s, spec)
        images.append(scene.image)
        boxes.append(scene.boxes)
        labels.append(scene.labels)
        if want_semantic:
            sem.append(scene.semantic())
    return np.stack(images), boxes, labels, (np.stack(sem) if want_semantic else None)


def render_pool(count: int, spec: SceneSpec, semantic: bool, workers: int = 2, seed_base: int = TRAIN_SEED_BASE):
    """Pre-render ``count`` training scenes in ``workers`` processes."""
    chunks = [list(range(seed_base + i, seed_base + min(i + 256, count))) for i in range(0, count, 256)]
    images, boxes, labels, sems = [], [], [], []
    with ProcessPoolExecutor(workers) as pool:
        for im, bx, lb, sm in pool.map(_render_batch, [(c, spec, semantic) for c in chunks]):
            images.append(im)
            boxes += bx
            labels += lb
            if sm is not None:
                sems.append(sm)
    return np.concatenate(images), boxes, labels, (np.concatenate(sems) if semantic else None)


def normalise(images_u8: np.ndarray, variant: ModelVariant) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float, exactly as the exported graph does it."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float()
    mean = torch.tensor(variant.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(variant.preprocess.std).view(1, 3, 1, 1)
    return (x - mean) / std


# ----------------------------------------------------------------------------------------------- detection
def yolo_targets(boxes: list[np.ndarray], labels: list[np.ndarray], imgsz: int, grid: int) -> torch.Tensor:
    """(N, S, S, 6): has_obj, cx, cy, w, h (all relative to the image), class."""
    t = torch.zeros(len(boxes), grid, grid, 6)
    for n, (bx, lb) in enumerate(zip(boxes, labels)):
        for (x0, y0, x1, y1), c in zip(bx, lb):
            cx, cy, w, h = (x0 + x1) / 2 / imgsz, (y0 + y1) / 2 / imgsz, (x1 - x0) / imgsz, (y1 - y0) / imgsz
            col, row = min(int(cx * grid), grid - 1), min(int(cy * grid), grid - 1)
            t[n, row, col] = torch.tensor([1.0, cx, cy, w, h, float(c)])
    return t


def _cell_boxes_xyxy(pred_xywh: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, S, S, B, 4) of x, y in-cell offsets and sqrt w, h -> image-relative xyxy."""
    s = pred_xywh.shape[1]
    idx = torch.arange(s, dtype=pred_xywh.dtype)
    cx = (pred_xywh[..., 0] + idx.view(1, 1, s, 1)) / grid
    cy = (pred_xywh[..., 1] + idx.view(1, s, 1, 1)) / grid
    w, h = pred_xywh[..., 2] ** 2, pred_xywh[..., 3] ** 2
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + 1e-9)


def yolo_loss(raw: torch.Tensor, target: torch.Tensor, boxes_per_cell: int,
              coord_scale: float = 5.0, noobj_scale: float = 0.5) -> torch.Tensor:
    """YOLOv1 loss with the paper's weights; confidence is trained toward the IoU (darknet ``rescore=1``)
    with BCE, and classes with cross-entropy on object cells."""
    n, s = raw.shape[:2]
    b = boxes_per_cell
    box_raw = raw[..., : b * 5].reshape(n, s, s, b, 5)
    box = torch.sigmoid(box_raw[..., :4])
    conf_logit = box_raw[..., 4]
    cls_logit = raw[..., b * 5 :]

    has_obj = target[..., 0] > 0
    gt_xyxy = torch.cat([target[..., 1:3] - target[..., 3:5] / 2, target[..., 1:3] + target[..., 3:5] / 2], -1)
    pred_xyxy = _cell_boxes_xyxy(box, s)
    iou = _iou(pred_xyxy, gt_xyxy.unsqueeze(3))  # (N, S, S, B)
    best = iou.argmax(-1, keepdim=True)
    responsible = torch.zeros_like(iou, dtype=torch.bool).scatter_(-1, best, True) & has_obj.unsqueeze(-1)

    idx = torch.arange(s, dtype=raw.dtype)
    gt_off = torch.stack([target[..., 1] * s - idx.view(1, 1, s), target[..., 2] * s - idx.view(1, s, 1),
                          target[..., 3].clamp(min=0).sqrt(), target[..., 4].clamp(min=0).sqrt()], -1)
    coord = ((box - gt_off.unsqueeze(3)) ** 2).sum(-1)[responsible].sum()
    conf_target = torch.where(responsible, iou.detach(), torch.zeros_like(iou))
    conf_w = torch.where(responsible, torch.ones_like(iou), torch.full_like(iou, noobj_scale))
    conf = (F.binary_cross_entropy_with_logits(conf_logit, conf_target, reduction="none") * conf_w).sum()
    cls = F.cross_entropy(cls_logit[has_obj], target[..., 5][has_obj].long(), reduction="sum") if has_obj.any() \
        else raw.sum() * 0
    return (coord_scale * coord + conf + cls) / n


# -------------------------------------------------------------------------------------------- segmentation
def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice over the classes present, which sharpens thin and small shapes."""
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = 1 - ((2 * inter + 1) / (denom + 1))[present].mean()
    return ce + dice


# ------------------------------------------------------------------------------- quantization-aware tuning
def _fake_quant(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 round trip with a straight-through gradient."""
    q = torch.clamp(torch.round(x / scale), -127, 127) * scale
    return x + (q - x).detach()


class _PerChannelWeightFakeQuant(nn.Module):
    """Parametrization of a conv weight: symmetric int8 per output channel. It commutes with the per-channel
    scaling of BatchNorm folding, so it simulates exactly what the exporters do to the folded weight."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp(min=1e-8) / 127
        return _fake_quant(w, scale)


class _ActivationFakeQuant:
    """Per-tensor symmetric int8 on a tensor, its range a running average of batch abs-max (as calibration
    would find it)."""

    def __init__(self, momentum: float = 0.05) -> None:
        self.range: torch.Tensor | None = None
        self.momentum = momentum

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        peak = x.detach().abs().amax()
        self.range = peak if self.range is None else self.range + self.momentum * (peak - self.range)
        return _fake_quant(x, self.range.clamp(min=1e-8) / 127)


def enable_int8_simulation(model: nn.Module) -> Callable[[], None]:
    """Simulate the jetson/rpi INT8 scheme (symmetric per-tensor activations, symmetric per-channel weights) on
    every convolution's input, output and weight, for quantization-aware fine-tuning. BatchNorm is frozen, as
    exporters fold it. Returns a function that removes the simulation and leaves plain float weights."""
    from torch.nn.utils import parametrize

    handles = []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        parametrize.register_parametrization(conv, "weight", _PerChannelWeightFakeQuant())
        fq_in, fq_out = _ActivationFakeQuant(), _ActivationFakeQuant()
        handles.append(conv.register_forward_pre_hook(lambda m, args, fq=fq_in: (fq(args[0]),)))
        handles.append(conv.register_forward_hook(lambda m, args, out, fq=fq_out: fq(out)))
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.eval()
        bn.requires_grad_(False)

    def remove() -> None:
        for h in handles:
            h.remove()
        for conv in convs:
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)

    return remove


# ------------------------------------------------------------------------------------------------- driver
def _batches(count: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    while True:
        order = rng.permutation(count)
        for i in range(0, count - batch + 1, batch):
            yield order[i : i + batch]


def _flip(images: np.ndarray, boxes: list[np.ndarray], sem: np.ndarray | None, rng, size: int):
    """Random horizontal flips: shapes are symmetric enough that a mirrored scene is still a valid scene."""
    images = images.copy()
    boxes = [b.copy() for b in boxes]
    sem = None if sem is None else sem.copy()
    for i in np.flatnonzero(rng.random(len(images)) < 0.5):
        images[i] = images[i, :, ::-1]
        if sem is not None:
            sem[i] = sem[i, :, ::-1]
        b = boxes[i]
        b[:, [0, 2]] = size - b[:, [2, 0]]
    return images, boxes, sem


def train(variant: ModelVariant, *, steps: int, pool_size: int, batch: int, lr: float, seed: int = 0,
          crop_until: float = 0.7, init=None, int8_aware: bool = False, pool_seed: int = 0,
          log: Callable[[str], None] = print) -> torch.nn.Module:
    """Train ``variant`` from scratch on procedural scenes for ``steps`` steps; returns the model (eval mode).

    Deterministic given the arguments. Segmentation trains on half-size crops for the first ``crop_until`` of
    the steps, then on full images. ``pool_seed`` picks a disjoint pool of scenes. ``int8_aware`` fine-tunes under simulated symmetric INT8 (see
    ``enable_int8_simulation``); the returned weights are plain float.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = variant.build()
    if init is not None:
        from edgevision.models.loading import load_into, read_state_dict

        load_into(model, read_state_dict(init), init)
    size = variant.imgsz
    grid = size // variant.stride
    spec = SceneSpec(size=(size, size), grid=grid, letterbox_prob=0.3)
    segment = get_task(variant.task).needs_masks
    t0 = time.perf_counter()
    # a fine-tuning stage with a new pool_seed sees scenes no earlier stage saw
    images, boxes, labels, sems = render_pool(pool_size, spec, semantic=segment,
                                              seed_base=pool_seed_base(pool_seed))
    log(f"rendered {pool_size} scenes in {time.perf_counter() - t0:.0f}s")

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    start = time.perf_counter()
    step = 0
    model.train()
    remove_simulation = enable_int8_simulation(model) if int8_aware else None
    for idx in _batches(len(images), batch, rng):
        if step >= steps:
            break
        elapsed = time.perf_counter() - start
        frac = step / steps
        warm = min(1.0, (step + 1) / 200)
        for g in opt.param_groups:
            g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * frac))
        im, bx, sm = _flip(images[idx], [boxes[i] for i in idx], None if sems is None else sems[idx], rng, size)
        if segment and frac < crop_until:  # random half-size crops: 4x the images/s at the same object scale
            c = size // 2
            y0, x0 = (int(v) for v in rng.integers(0, size - c + 1, 2) // 32 * 32)
            im, sm = im[:, y0 : y0 + c, x0 : x0 + c], sm[:, y0 : y0 + c, x0 : x0 + c]
        x = normalise(np.ascontiguousarray(im), variant)
        if segment:
            loss = segmentation_loss(model(x), torch.from_numpy(np.ascontiguousarray(sm)).long())
        else:
            tgt = yolo_targets(bx, [labels[i] for i in idx], size, grid)
            loss = yolo_loss(model.forward_raw(x), tgt, model.boxes_per_cell)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            log(f"step {step}/{steps} {elapsed / 60:.1f}min lr {opt.param_groups[0]['lr']:.2e} loss {loss.item():.4f} "
                f"({step * batch / elapsed:.0f} img/s)")
    if remove_simulation is not None:
        remove_simulation()
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------- classification
def classification_spec(size: int) -> SceneSpec:
    """One large shape per image over a textured, cluttered background (the classify task's eval set draws the
    same kind of image from other seeds)."""
    return SceneSpec(size=(size, size), grid=1, min_objects=1, max_objects=1, min_frac=0.3, max_frac=0.8)


class DenseTargets(nn.Module):
    """Training-only heads that give a ViT a signal at every patch, not just at the class token ("token
    labelling", Jiang et al. 2021): the final patch tokens predict the class mix of their patch (background
    included), and the tokens after block ``mid`` predict their patch's 4 x 4 foreground mask. From the class token
    alone, a DeiT-Tiny trained from scratch on the synthetic shapes stayed within 5 points of chance for 1,000 steps;
    the heads are dropped when training ends (the exported model has no trace of them)."""

    cells = 4

    def __init__(self, dim: int, num_classes: int, mid: int) -> None:
        super().__init__()
        self.mid = mid
        self.classes = nn.Linear(dim, num_classes + 1)
        self.mask = nn.Linear(dim, self.cells * self.cells)

    def loss(self, model, x: torch.Tensor, mix: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and the dense loss. ``mix`` (B, P, K+1) class fractions per patch, ``fg`` (B, P, 16)
        foreground fractions per patch cell; P patches row by row."""
        seen = {}
        hook = model.blocks[self.mid - 1].register_forward_hook(lambda m, i, o: seen.__setitem__("mid", o))
        try:
            tokens = model.forward_features(x)
        finally:
            hook.remove()
        prefix = model.num_prefix_tokens
        logits = model.forward_head(tokens)
        mix_loss = -(mix * F.log_softmax(self.classes(tokens[:, prefix:]), -1)).sum(-1).mean()
        fg_loss = F.binary_cross_entropy_with_logits(self.mask(seen["mid"][:, prefix:]), fg)
        return logits, mix_loss + self.cells * fg_loss


def dense_targets(semantic: np.ndarray, patch: int, num_classes: int, cells: int = DenseTargets.cells):
    """(N, S, S) label maps (0 background, k+1 class k) -> per patch class fractions (N, P, K+1) and foreground
    fractions of a cells x cells split of each patch (N, P, cells^2), float16."""
    n, h, w = semantic.shape
    gh, gw = h // patch, w // patch
    tiles = semantic[:, : gh * patch, : gw * patch].reshape(n, gh, patch, gw, patch)
    mix = np.stack([(tiles == k).mean(axis=(2, 4)) for k in range(num_classes + 1)], -1)
    sub = patch // cells
    fg = (tiles > 0).reshape(n, gh, cells, sub, gw, cells, sub).mean(axis=(3, 6))  # (N, gh, cells, gw, cells)
    fg = fg.transpose(0, 1, 3, 2, 4)
    return (mix.reshape(n, gh * gw, -1).astype(np.float16), fg.reshape(n, gh * gw, cells * cells).astype(np.float16))


def _flip_dense(mix: np.ndarray, fg: np.ndarray, grid: int, cells: int = DenseTargets.cells):
    """The dense targets of horizontally flipped images: patch columns reversed, and cell columns within each."""
    n = len(mix)
    mix = mix.reshape(n, grid, grid, -1)[:, :, ::-1].reshape(n, grid * grid, -1)
    fg = fg.reshape(n, grid, grid, cells, cells)[:, :, ::-1, :, ::-1].reshape(n, grid * grid, -1)
    return mix, fg


def _load_or_render_pool(pool_file: Path, pool_size: int, size: int, patch: int, num_classes: int, pool_seed: int,
                         log):
    if pool_file.is_file():
        with np.load(pool_file) as z:
            if "fg" in z:
                return z["images"], z["labels"], z["mix"], z["fg"]
    t0 = time.perf_counter()
    images, _, labels_list, semantic = render_pool(pool_size, classification_spec(size), semantic=True,
                                                   seed_base=pool_seed_base(pool_seed))
    labels = np.array([int(lb[0]) for lb in labels_list], np.int64)
    mix, fg = dense_targets(semantic, patch, num_classes)
    tmp = pool_file.with_name(pool_file.name + ".tmp.npz")
    np.savez(tmp, images=images, labels=labels, mix=mix, fg=fg)
    os.replace(tmp, pool_file)
    log(f"rendered {pool_size} images in {time.perf_counter() - t0:.0f}s")
    return images, labels, mix, fg


def train_classifier(variant: ModelVariant, *, steps: int, pool_size: int, batch: int, lr: float,
                     checkpoint: Path, seed: int = 0, resume: bool = True, warmup: int = 200,
                     label_smoothing: float = 0.1, stop_after: int | None = None, init: Path | None = None,
                     pool_seed: int = 0, log: Callable[[str], None] = print) -> torch.nn.Module:
    """Train a ViT classifier on single-shape scenes with dense per-patch targets (:class:`DenseTargets`), from
    scratch or, in a later stage, from the weights (and heads) of the checkpoint ``init``; resumable.

    Every 100 steps the model, the heads, the optimizer, the step and the random states go to ``checkpoint``
    (written atomically), and the rendered pool is cached beside it. With ``resume`` a run picks up where the
    checkpoint left off and continues exactly as an uninterrupted run would (same batches, same learning-rate
    schedule). ``stop_after`` ends the run at that step, as an interruption would (the schedule still spans
    ``steps``). A later stage renders its own pool beside its checkpoint (``pool_seed``: scenes disjoint from
    other pool seeds).
    """
    checkpoint = Path(checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    model, state = seeded_model(variant, seed, init)
    init_heads = state.get("heads") if state is not None else None
    patch, grid, num_classes = model.patch_size, variant.imgsz // model.patch_size, len(variant.labels)
    heads = DenseTargets(model.head.in_features, num_classes, mid=max(1, len(model.blocks) // 3))
    if init is not None and init_heads is not None:
        heads.load_state_dict(init_heads)
    params = [*model.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    step = _load_checkpoint(checkpoint, model, heads, opt, rng, log) if resume and checkpoint.is_file() else 0
    images, labels, mix_all, fg_all = _load_or_render_pool(checkpoint.with_suffix(".pool.npz"), pool_size,
                                                           variant.imgsz, patch, num_classes, pool_seed, log)
    batches = _batches(len(images), batch, np.random.default_rng(seed + 1))
    for _ in range(step):  # the same batches as an uninterrupted run
        next(batches)
    model.train()
    start, done_at_start = time.perf_counter(), step
    window: list[tuple[float, float]] = []
    while step < min(steps, stop_after or steps):
        idx = next(batches)
        set_lr(opt, lr, step, steps, warmup)
        im, mix, fg = images[idx].copy(), mix_all[idx].copy(), fg_all[idx].copy()
        flip = rng.random(len(im)) < 0.5
        im[flip] = im[flip, :, ::-1]
        mix[flip], fg[flip] = _flip_dense(mix[flip], fg[flip], grid)
        target = torch.from_numpy(labels[idx])
        logits, dense_loss = heads.loss(model, normalise(np.ascontiguousarray(im), variant),
                                        torch.from_numpy(mix.astype(np.float32)), torch.from_numpy(fg.astype(np.float32)))
        loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing) + dense_loss
        window.append((loss.item(), (logits.argmax(1) == target).float().mean().item()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step in (steps, stop_after):
            elapsed = time.perf_counter() - start
            _save_checkpoint(checkpoint, model, heads, opt, step, rng)
            losses, accs = zip(*window)
            log(f"step {step}/{steps} lr {opt.param_groups[0]['lr']:.2e} loss {np.mean(losses):.4f} "
                f"train top-1 {100 * np.mean(accs):.1f} (mean of the last {len(window)} steps) "
                f"({(step - done_at_start) * batch / elapsed:.0f} img/s, {elapsed / 60:.1f} min)")
            window.clear()
    model.eval()
    return model


def seeded_model(variant: ModelVariant, seed: int, init: Path | None = None,
                 new_modules: tuple[str, ...] = ()) -> tuple[nn.Module, dict | None]:
    """``variant`` built after seeding torch with ``seed``, then loaded with the weights of ``init`` (a state_dict,
    or a checkpoint with a ``model`` entry) when given; and that file's whole content (None without one).
    ``init`` may lack the keys under ``new_modules`` (prefixes of modules added since it was trained), which keep
    their initialisation; every other key must match."""
    torch.manual_seed(seed)
    model = variant.build()
    state = None
    if init is not None:
        state = torch.load(init, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.get("model", state).items()},
                                                    strict=False)
        missing = [k for k in missing if not k.startswith(new_modules)]
        if missing or unexpected:
            raise RuntimeError(f"{init} does not fit {variant.name}: missing {missing[:5]}, unexpected "
                               f"{unexpected[:5]}")
    return model, state


def set_lr(opt, peak: float, step: int, steps: int, warmup: int) -> None:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    lr = peak * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def _load_checkpoint(path: Path, model, heads, opt, rng: np.random.Generator, log: Callable[[str], None]) -> int:
    """Restore what ``_save_checkpoint`` wrote; returns the step to continue from."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if heads is not None:
        heads.load_state_dict(state["heads"])
    opt.load_state_dict(state["opt"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    log(f"resumed from {path} at step {state['step']}")
    return state["step"]


def _save_checkpoint(path: Path, model, heads, opt, step: int, rng: np.random.Generator) -> None:
    tmp = path.with_name(path.name + ".tmp")
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state()}
    if heads is not None:
        state["heads"] = heads.state_dict()
    torch.save(state, tmp)
    os.replace(tmp, path)
