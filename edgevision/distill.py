"""`edgevision distill`: a smaller image encoder for a promptable model, learned from the teacher's embeddings on
the user's own unlabelled images (MobileSAM's decoupled distillation: MSE on the embeddings; the teacher's prompt
encoder and mask decoder are copied unchanged).

The student may be narrower, shallower, or take a smaller input; its embeddings are resized to the teacher's grid
before the decoder, or (``own_grid``) the decoder runs at the student's grid. The output checkpoint carries its hyperparameters (``edgevision_config``) and exports as
``efficient-sam-student``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgevision.errors import BadInput
from edgevision.models.loading import build_model
from edgevision.models.registry import get_variant
from edgevision.training import set_lr

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DECODER_KEYS = ("neck_dim", "decoder_depth", "decoder_heads", "decoder_mlp_dim", "upscale_dims")


@dataclass
class DistillStep:
    step: int
    steps: int
    loss: float
    images_per_s: float


def student_config(teacher_variant, teacher_model, *, img_size: int | None, embed_dim: int, depth: int,
                   num_heads: int, own_grid: bool = False) -> dict:
    """The student's hyperparameters: its own encoder, the teacher's decoder, and the decoder's grid: the
    teacher's, or with ``own_grid`` the student's own."""
    size = img_size or teacher_model.img_size
    if size % 16:
        raise BadInput(f"--imgsz {size}: must be a multiple of the patch size 16")
    if embed_dim % num_heads:
        raise BadInput(f"--dim {embed_dim} is not divisible by --heads {num_heads}")
    config = {k: v for k, v in teacher_variant.config.items() if k in DECODER_KEYS}
    config.update({"img_size": size, "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads,
                   "pos_grid": size // 16,
                   "decoder_grid": size // 16 if own_grid else teacher_model.image_encoder.grid})
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def teacher_blocks(teacher_depth: int, depth: int) -> list[int]:
    """The teacher blocks a student of ``depth`` blocks starts from: evenly spaced, first and last kept (as
    DistilBERT takes every other layer of its teacher)."""
    if not 1 <= depth <= teacher_depth:
        raise BadInput(f"--depth {depth}: a student started from the teacher takes 1 to {teacher_depth} of its "
                       f"{teacher_depth} blocks")
    if depth == 1:
        return [teacher_depth - 1]
    return [round(i * (teacher_depth - 1) / (depth - 1)) for i in range(depth)]


def init_from_teacher(student_encoder, teacher_encoder) -> list[int]:
    """Copy the teacher encoder into the student's: patch embedding, position embedding (resized to the student's
    grid), neck, and evenly spaced blocks. The student must have the teacher's width and heads. Returns the
    teacher blocks used."""
    from edgevision.models.efficient_sam import resize_abs_pos

    s_dim, t_dim = student_encoder.pos_embed.shape[-1], teacher_encoder.pos_embed.shape[-1]
    s_heads, t_heads = student_encoder.blocks[0].attn.num_heads, teacher_encoder.blocks[0].attn.num_heads
    if (s_dim, s_heads) != (t_dim, t_heads):
        raise BadInput(f"--init-from-teacher: the student's --dim {s_dim} --heads {s_heads} must equal the "
                       f"teacher's ({t_dim}, {t_heads}); change them or drop --init-from-teacher")
    keep = teacher_blocks(len(teacher_encoder.blocks), len(student_encoder.blocks))
    with torch.no_grad():
        student_encoder.patch_embed.load_state_dict(teacher_encoder.patch_embed.state_dict())
        student_encoder.neck.load_state_dict(teacher_encoder.neck.state_dict())
        grid = math.isqrt(student_encoder.pos_embed.shape[1] - 1)
        pos = teacher_encoder.pos_embed
        student_encoder.pos_embed.copy_(torch.cat([pos[:, :1], resize_abs_pos(pos, grid)], dim=1))
        for block, i in zip(student_encoder.blocks, keep):
            block.load_state_dict(teacher_encoder.blocks[i].state_dict())
    return keep


def load_images(data: Path, size: int, limit: int | None = None) -> list[np.ndarray]:
    """Every readable image of ``data`` (RGB), its longer side at most ``2 * size`` to bound memory."""
    import cv2

    if not data.is_dir():
        raise BadInput(f"--data {data}: not a folder; give a folder of JPEG/PNG images (no labels needed)")
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    images = []
    for path in files:
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        scale = min(1.0, 2 * size / max(bgr.shape[:2]))
        if scale < 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not images:
        raise BadInput(f"--data {data}: no readable images in it; give a folder of JPEG/PNG images")
    return images


def _views(images: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator,
           sizes: tuple[int, int]) -> list[np.ndarray]:
    """A random square-ish crop (half to all of the image) of each, flipped half the time, plainly resized to
    each model's input -> one uint8 (B, S, S, 3) batch per size."""
    import cv2

    out = [[] for _ in sizes]
    for i in idx:
        im = images[i]
        h, w = im.shape[:2]
        frac = rng.uniform(0.5, 1.0)
        ch, cw = max(16, int(h * frac)), max(16, int(w * frac))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = im[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        for k, s in enumerate(sizes):
            out[k].append(cv2.resize(np.ascontiguousarray(crop), (s, s), interpolation=cv2.INTER_AREA))
    return [np.stack(v) for v in out]


def _normalise(batch: np.ndarray, preprocess) -> torch.Tensor:
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(preprocess.mean).view(1, 3, 1, 1)) / torch.tensor(preprocess.std).view(1, 3, 1, 1)


def distill(teacher: str, data: Path, out: Path, *, teacher_weights: Path | None = None, img_size: int | None = None,
            embed_dim: int = 96, depth: int = 6, num_heads: int = 3, steps: int = 2000, batch: int = 8,
            lr: float = 1e-3, seed: int = 0, resume: bool = False, from_teacher: bool = False,
            own_grid: bool = False, teacher_img_size: int | None = None, checkpoint_every: int = 50,
            on_step: Callable[[DistillStep], None] | None = None, say: Callable[[str], None] = lambda _m: None,
            ) -> Path:
    """Distill ``teacher``'s image encoder into a student on the images of ``data``; writes ``out``.

    The training state goes to ``OUT.state.pt`` every ``checkpoint_every`` steps and on Ctrl-C (KeyboardInterrupt,
    re-raised after the student so far is written to ``out``); ``resume`` continues from it. ``from_teacher``
    starts the student's encoder from the teacher's (see :func:`init_from_teacher`) instead of at random.
    ``own_grid`` runs the decoder at the student's own grid and learns the teacher's embeddings area-resized to
    it, instead of resizing the student's embeddings up to the teacher's grid. ``teacher_img_size`` runs the
    teacher at another input size to make the targets (its position embedding resized, as for the student):
    with ``own_grid`` and the student's size, the targets are the teacher's own embeddings at the student's
    grid, which its decoder reads as it reads its own, not a resize of them."""
    variant = get_variant(teacher)
    if variant.task != "prompt-segment":
        raise BadInput(f"distill takes a promptable segmentation model; {teacher} is a {variant.task} model")
    if steps < 1 or batch < 1:
        raise BadInput("--steps and --batch must be at least 1")
    out = Path(out)
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: the folder {out.parent} does not exist")
    state_path = out.with_name(out.name + ".state.pt")
    if resume and not state_path.is_file():
        raise BadInput(f"--resume: no training state at {state_path}; run without --resume to start")
    torch.manual_seed(seed)
    teacher_model = build_model(variant, weights=teacher_weights)
    if teacher_img_size is not None and (teacher_img_size < 16 or teacher_img_size % 16):
        raise BadInput(f"--teacher-imgsz {teacher_img_size}: must be a positive multiple of the patch size 16")
    teacher_model.set_input_size(teacher_model.img_size)
    config = student_config(variant, teacher_model, img_size=img_size, embed_dim=embed_dim, depth=depth,
                            num_heads=num_heads, own_grid=own_grid)
    student = get_variant("efficient-sam-student").build(config={k: tuple(v) if isinstance(v, list) else v
                                                                  for k, v in config.items()})
    student.prompt_encoder.load_state_dict(teacher_model.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher_model.mask_decoder.state_dict())
    if from_teacher and not resume:  # a resumed state holds the student's weights
        keep = init_from_teacher(student.image_encoder, teacher_model.image_encoder)
        say(f"student encoder started from the teacher's (blocks {keep})")
    if teacher_img_size is not None:  # after the student's start, which copies the teacher's trained pos_embed
        teacher_model.set_input_size(teacher_img_size)
    targets_at = teacher_model.img_size
    params = list(student.image_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    step = 0
    if resume:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("teacher_img_size", targets_at) != targets_at:
            raise BadInput(f"--resume: {state_path} was started with the teacher at {state['teacher_img_size']} px; "
                           f"repeat --teacher-imgsz {state['teacher_img_size']}, or start without --resume")
        if state.get("edgevision_config") != config:
            raise BadInput(f"--resume: {state_path} was started with other student settings "
                           f"({state.get('edgevision_config')}); repeat them, or start without --resume")
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        rng.bit_generator.state = state["rng"]
        say(f"resumed from {state_path} at step {step}")

    def save_state() -> None:
        _atomic_save({"model": student.state_dict(), "opt": opt.state_dict(), "step": step,
                      "rng": rng.bit_generator.state, "edgevision_config": config, "teacher_img_size": targets_at},
                     state_path)

    try:  # from here on, Ctrl-C keeps the student so far, even before its first step
        sizes = (teacher_model.img_size, config["img_size"])
        images = load_images(Path(data), max(sizes))
        say(f"{len(images)} images from {data}; teacher {teacher} at {sizes[0]} px, student at {sizes[1]} px "
            f"(dim {embed_dim}, {depth} blocks)")
        teacher_model.eval()
        student.train()
        start, first = time.perf_counter(), step
        while step < steps:
            set_lr(opt, lr, step, steps, warmup=100)
            idx = rng.integers(0, len(images), batch)
            t_in, s_in = _views(images, idx, rng, sizes)
            with torch.no_grad():
                target = teacher_model.embed(_normalise(t_in, variant.preprocess))
                if target.shape[-1] != student.grid:  # --own-grid: the teacher's embeddings down to the student's
                    target = F.interpolate(target, size=(student.grid, student.grid), mode="area")
            loss = F.mse_loss(student.embed(_normalise(s_in, variant.preprocess)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if on_step is not None:
                on_step(DistillStep(step, steps, loss.item(), (step - first) * batch / (time.perf_counter() - start)))
            if step % checkpoint_every == 0:
                save_state()
    except KeyboardInterrupt:
        save_state()
        write_student(student, config, teacher, out)
        raise
    save_state()
    write_student(student, config, teacher, out)
    return out


def write_student(student, config: dict, teacher: str, out: Path) -> None:
    """The student checkpoint: ``{"model": state_dict, "edgevision_config": hyperparameters, "teacher": name}``,
    written to a temp name and renamed."""
    _atomic_save({"model": {k: v.detach().clone() for k, v in student.state_dict().items()},
                  "edgevision_config": config, "teacher": teacher}, out)


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
