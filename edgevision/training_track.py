"""Training the demo tracker (``sam-track-demo``) on synthetic clips, SAM 2 style.

A training sample is a window of ``frames`` frames cut from a rendered clip (every other frame or every frame,
forwards or backwards): one object is prompted on the window's first frame (its box, one point or a few
points), then tracked through the rest with the memory built from the model's own predictions, as at
inference. The loss per frame is SAM 2's: 20 x focal + dice on the mask (the best of the multimask outputs
where SAM 2 asks for several), MSE on the predicted IoU, and binary cross-entropy on the object score.

Stage 1 (``freeze_encoder``) starts the image encoder from ``efficient-sam-demo``'s and keeps it frozen: its
features are computed once per clip of the pool and cached, so a step costs only the memory modules and the
decoder. The memory slot layout of every frame is the bank's own (``MemoryBank`` run on frame indices), so
training and inference see the same memory.

Resumable (every 50 steps, atomically), reproducible by seed on one machine and torch build.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgevision.data.tracking_clips import ClipSpec, clip_seeds, render_clip
from edgevision.errors import BadInput
from edgevision.models.registry import ModelVariant, get_variant
from edgevision.models.sam2 import UNUSED_SLOT, normalise
from edgevision.ops.memory_bank import MemoryBank
from edgevision.training import seeded_model, set_lr
from edgevision.training_prompt import focal_dice, sample_prompt

CLIP_LENGTH = 24
PAD = -1
MIN_AREA = 30  # pixels of an object on the prompted frame


# ------------------------------------------------------------------------------------------------ the pool
def encode_pool(model, count: int, seed_offset: int, size: int, log: Callable[[str], None]
                ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Render ``count`` training clips and encode every frame with the (frozen) image encoder: features
    (count, T, C, g, g) float16, per clip its masks (T, K, S, S) packed along the last axis, and the frames
    (count, T, S, S, 3) uint8 (the skip stem, trained, reads them)."""
    feats, masks, frames = None, [], np.zeros((count, CLIP_LENGTH, size, size, 3), np.uint8)
    start = time.perf_counter()
    with torch.no_grad():
        for i, seed in enumerate(s + seed_offset for s in clip_seeds("train", count)):
            clip = render_clip(seed, ClipSpec(size=size, length=CLIP_LENGTH))
            f = model.image_encoder(normalise(torch.from_numpy(clip.frames)))
            if feats is None:
                feats = np.zeros((count, *f.shape), np.float16)
            feats[i] = f.numpy().astype(np.float16)
            masks.append(np.packbits(clip.masks, axis=-1))
            frames[i] = clip.frames
            if (i + 1) % 100 == 0:
                log(f"encoded {i + 1}/{count} clips ({(time.perf_counter() - start) / 60:.1f} min)")
    return feats, masks, frames


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """A digest of the encoder's weights: a cached pool is only valid for the encoder that made it."""
    digest = hashlib.sha1()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().numpy().tobytes())
    return digest.hexdigest()


def load_or_encode_pool(path: Path, model, count: int, seed_offset: int, size: int, log) -> tuple:
    """``encode_pool``'s output, cached in ``path``. A cache made by other encoder weights, or without frames
    (from before the skip stem), is encoded again."""
    fingerprint = encoder_fingerprint(model.image_encoder)
    if path.is_file():
        with np.load(path) as z:
            if len(z["features"]) == count and "frames" in z.files and \
                    "encoder" in z.files and str(z["encoder"]) == fingerprint:
                log(f"loaded the encoded pool {path}")
                return z["features"], [z[f"masks_{i}"] for i in range(count)], z["frames"]
        log(f"{path} was encoded by other weights: encoding the pool again")
    feats, masks, frames = encode_pool(model, count, seed_offset, size, log)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=feats, frames=frames, encoder=np.array(fingerprint),
             **{f"masks_{i}": m for i, m in enumerate(masks)})
    os.replace(tmp, path)
    return feats, masks, frames


# --------------------------------------------------------------------------------------------- sampling
def slot_prompt(coords: np.ndarray, labels: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The points of a prompt in the tracker's slot layout: the points, SAM 2's padding token (two with no
    points), then masked spare slots."""
    used = labels >= 0
    pts, labs = coords[used], labels[used]
    out_c = np.zeros((slots, 2), np.float32)
    out_l = np.full(slots, UNUSED_SLOT, np.float32)
    out_c[: len(pts)], out_l[: len(pts)] = pts, labs
    pads = 1 if len(pts) else 2
    out_l[len(pts): len(pts) + pads] = PAD
    return out_c, out_l


def sample_window(rng: np.random.Generator, length: int, frames: int) -> np.ndarray:
    """Frame indices of a training window: stride 1 or 2, forwards or backwards."""
    step = int(rng.integers(1, 3)) if length >= 2 * frames else 1
    span = (frames - 1) * step
    start = int(rng.integers(0, length - span))
    idx = start + step * np.arange(frames)
    return idx[::-1].copy() if rng.random() < 0.5 else idx


def memory_layouts(frames: int, num_maskmem: int, max_cond: int, max_ptrs: int) -> list[dict]:
    """Per frame after the first, which earlier frame fills each memory and pointer slot (-1: empty), with
    the bank's own temporal encodings: ``MemoryBank`` run on frame indices."""
    bank = MemoryBank((1,), 1, num_maskmem, max_cond, max_ptrs, bfloat16=False)
    bank.add(0, np.zeros(1, np.float32), np.zeros(1, np.float32), conditioning=True)
    layouts = []
    for t in range(1, frames):
        g = bank.gather(t)
        mem_frame = np.where(g["mem_valid"][0] > 0, g["mem_features"][0, :, 0], -1).astype(int)
        ptr_frame = np.where(g["ptr_valid"][0] > 0, g["obj_ptrs"][0, :, 0], -1).astype(int)
        layouts.append({"mem_frame": mem_frame, "mem_tpos": g["mem_tpos"][0], "ptr_frame": ptr_frame,
                        "ptr_tpos": g["ptr_tpos"][0]})
        bank.add(t, np.full(1, t, np.float32), np.full(1, t, np.float32))
    return layouts


# ------------------------------------------------------------------------------------------------ a step
def skips_of(model, frames: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The skip stem's features of (..., S, S, 3) uint8 frames, with the leading axes kept (None, None without
    a stem)."""
    if model.skip_stem is None:
        return None, None
    lead = frames.shape[:-3]
    # channels-last: on CPU these small-channel convs train about twice as fast in it
    s0, s1 = model.skip_stem(normalise(frames.reshape(-1, *frames.shape[-3:])).contiguous(
        memory_format=torch.channels_last))
    return s0.reshape(*lead, *s0.shape[1:]), s1.reshape(*lead, *s1.shape[1:])


def window_loss(model, feats: torch.Tensor, frames: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor,
                coords: torch.Tensor, labels: torch.Tensor, num_points: np.ndarray, layouts: list[dict],
                extra: tuple | None = None) -> tuple[torch.Tensor, dict]:
    """feats (B, T, C, g, g) vision features of frames (B, T, S, S, 3) uint8; targets (B, T, S, S) float masks;
    visible (B, T) 0/1; the prompt of frame 0 (B, slots, 2) and (B, slots) with its number of points (a box is
    two) -> loss and stats. ``extra``: single-frame prompts (features (N, C, g, g), frames (N, S, S, 3), coords,
    labels, targets (N, S, S), numbers of points), decoded without memory, their loss one more term of the mean."""
    b, t_len = feats.shape[:2]
    dense_pe = model.dense_pe()
    s0, s1 = skips_of(model, frames)
    memories, ptrs = [], []
    losses, ious_hit = [], []
    empty_c = torch.zeros_like(coords)
    empty_l = torch.full_like(labels, UNUSED_SLOT)
    empty_l[:, :2] = PAD
    for t in range(t_len):
        f = feats[:, t]
        if t == 0:
            x, c, lab = model.without_memory(f), coords, labels
            multi = torch.from_numpy(num_points <= 1)
        else:
            lay = layouts[t - 1]
            mem = torch.stack([memories[i] if i >= 0 else torch.zeros_like(memories[0]) for i in lay["mem_frame"]], 1)
            ptr = torch.stack([ptrs[i] if i >= 0 else torch.zeros_like(ptrs[0]) for i in lay["ptr_frame"]], 1)
            mem_valid = torch.from_numpy((lay["mem_frame"] >= 0).astype(np.float32)).expand(b, -1)
            ptr_valid = torch.from_numpy((lay["ptr_frame"] >= 0).astype(np.float32)).expand(b, -1)
            x = model.condition(f, mem, torch.from_numpy(lay["mem_tpos"]).expand(b, -1), mem_valid, ptr,
                                torch.from_numpy(lay["ptr_tpos"]).float().expand(b, -1), ptr_valid)
            c, lab = empty_c, empty_l
            multi = torch.ones(b, dtype=torch.bool)
        skips = (None, None) if s0 is None else (s0[:, t], s1[:, t])
        masks, iou, obj_ptrs, score = model.decode(x, *skips, c, lab, dense_pe=dense_pe)
        vis = visible[:, t]
        loss, actual, keep = frame_loss(masks, iou, score, targets[:, t], vis, multi)
        losses.append(loss.mean())
        ious_hit.append(float((actual.gather(1, keep[:, None])[:, 0] * vis).sum() / vis.sum().clamp(min=1)))
        kept = masks.gather(1, keep[:, None, None, None].expand(-1, 1, *masks.shape[-2:]))
        memories.append(model.encode_memory(f, kept.detach(), torch.full((b, 1), 1.0 if t == 0 else 0.0), score))
        ptrs.append(obj_ptrs.gather(1, keep[:, None, None].expand(-1, 1, obj_ptrs.shape[-1]))[:, 0])
    stats = {"first_iou": ious_hit[0], "tracked_iou": float(np.mean(ious_hit[1:]))}
    if extra is not None:  # single-frame prompts on other frames and objects: the decoder learns prompts faster
        f_x, i_x, c_x, l_x, t_x, n_x = extra
        masks, iou, _, score = model.decode(model.without_memory(f_x), *skips_of(model, i_x), c_x, l_x,
                                            dense_pe=dense_pe)
        loss, actual, keep = frame_loss(masks, iou, score, t_x, torch.ones(len(f_x)), torch.from_numpy(n_x <= 1))
        losses.append(loss.mean())
        stats["extra_iou"] = float(actual.gather(1, keep[:, None]).mean())
    return torch.stack(losses).mean(), stats


def with_feature_noise(feats: np.ndarray, sqnr_db: float, rng: np.random.Generator) -> np.ndarray:
    """feats (..., C, g, g) float32 -> the same plus Gaussian noise ``sqnr_db`` below each frame's (each (C, g, g)
    slice's) mean power.

    An INT8 image encoder's features sit 35-48 dB from FP32, and the FP32 tracker loses objects on long clips
    under random noise of 50 dB (RESULTS, session 34); training under such noise asks the memory modules and the
    decoder for decisions that survive it.
    """
    if not np.isfinite(sqnr_db):
        raise ValueError(f"sqnr_db={sqnr_db}")
    power = np.mean(np.square(feats), axis=(-3, -2, -1), keepdims=True)
    noise = rng.standard_normal(feats.shape).astype(np.float32)
    return feats + noise * np.sqrt(power * 10 ** (-sqnr_db / 10)).astype(np.float32)


def frame_loss(masks, iou, score, target, visible, multi) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM 2's loss for one decoded frame: masks (B, 4, m, m), IoU predictions (B, 4), score (B, 1), the target
    (B, S, S), whether the object is visible (B,) and whether SAM 2 asks for several masks (B,) -> the loss per
    sample, each output's actual IoU (B, 4), and the output inference keeps (the best predicted IoU of the
    multimask outputs, else token 0)."""
    size = target.shape[-1]
    up = F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False)
    per_mask = focal_dice(up, target[:, None].expand_as(up))  # (B, 4)
    with torch.no_grad():
        hard = up > 0
        inter = (hard & (target[:, None] > 0.5)).flatten(2).sum(-1).float()
        union = (hard | (target[:, None] > 0.5)).flatten(2).sum(-1).float()
        actual = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        keep = torch.where(multi, 1 + iou[:, 1:].argmax(1), torch.zeros(len(iou), dtype=torch.long))
    loss_index = torch.where(multi, 1 + per_mask[:, 1:].argmin(1), torch.zeros(len(iou), dtype=torch.long))
    mask_loss = per_mask.gather(1, loss_index[:, None])[:, 0]
    sq = (iou - actual) ** 2
    iou_loss = torch.where(multi, sq[:, 1:].mean(1), sq[:, 0])
    score_loss = F.binary_cross_entropy_with_logits(score[:, 0], visible, reduction="none")
    return visible * (mask_loss + iou_loss) + score_loss, actual, keep


def train_tracker(variant: ModelVariant, *, steps: int, pool_size: int, batch: int, lr: float, checkpoint: Path,
                  frames: int = 8, seed: int = 0, resume: bool = True, warmup: int = 100, init: Path | None = None,
                  encoder_from: Path | None = None, stop_after: int | None = None, extra_prompts: int = 2,
                  feature_noise_db: float | None = None, log: Callable[[str], None] = print) -> torch.nn.Module:
    """The encoder stays frozen, everything else is trained. The encoder's weights come from ``encoder_from``
    (a prompt segmenter's weights file) when given, else from ``init``, else from the bundled
    ``efficient-sam-demo``. Each window also gives ``extra_prompts`` single-frame prompts (random frames and
    objects, no memory). ``feature_noise_db``: the encoder's features reach the rest with Gaussian noise this
    many dB below their power (``with_feature_noise``); a resume keeps the value the checkpoint was made with."""
    checkpoint = Path(checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    model, state = seeded_model(variant, seed, init, new_modules=("skip_stem.",))
    # a skip stem added to trained weights starts at zero output; at the common LR it stayed near zero for
    # hundreds of steps, so a new stem learns 10x faster
    fresh_stem = state is not None and model.skip_stem is not None and \
        not any(k.startswith("skip_stem.") for k in state.get("model", state))
    if init is None or encoder_from is not None:
        donor = Path(encoder_from or get_variant("efficient-sam-demo").weights_path)
        donor_state = torch.load(donor, map_location="cpu", weights_only=True)
        donor_state = donor_state.get("model", donor_state)
        enc = {k[len("image_encoder."):]: v.float() for k, v in donor_state.items()
               if k.startswith("image_encoder.")}
        model.image_encoder.load_state_dict(enc)
        log(f"image encoder from {donor}")
    model.set_input_size(variant.imgsz)
    for p in model.image_encoder.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    stem = {id(p) for p in model.skip_stem.parameters()} if fresh_stem else set()
    opt = torch.optim.AdamW([{"params": [p for p in params if id(p) not in stem]},
                             {"params": [p for p in params if id(p) in stem], "lr_scale": 10.0}],
                            lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    step = 0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        if state.get("feature_noise_db") != feature_noise_db:
            raise BadInput(f"{checkpoint} was trained with feature noise {state.get('feature_noise_db')} dB, not "
                           f"{feature_noise_db}: resume with the same setting, or give another checkpoint")
        log(f"resumed from {checkpoint} at step {step}")
    model.image_encoder.eval()
    feats, packed, images = load_or_encode_pool(checkpoint.with_suffix(".pool.npz"), model, pool_size, 0,
                                                variant.imgsz, log)
    head = model.head_spec(variant.imgsz)
    layouts = memory_layouts(frames, head["num_maskmem"], head["max_cond_frames"], head["max_ptrs"])
    slots = head["prompt_slots"]
    size = variant.imgsz
    model.train()
    model.image_encoder.eval()
    start, done_at_start = time.perf_counter(), step

    def encoded(cached: np.ndarray) -> np.ndarray:
        """Cached encoder features as the rest of the model sees them in training (with the noise, if any)."""
        f = cached.astype(np.float32)
        return f if feature_noise_db is None else with_feature_noise(f, feature_noise_db, rng)

    window: list[dict] = []
    while step < min(steps, stop_after or steps):
        set_lr(opt, lr, step, steps, warmup)
        f_b, i_b, t_b, v_b, c_b, l_b, n_b = [], [], [], [], [], [], []
        x_f, x_i, x_c, x_l, x_t, x_n = [], [], [], [], [], []
        for _ in range(batch):
            candidates = np.zeros(0, int)
            while not len(candidates):  # a window whose first frame shows some object well enough to prompt
                i = int(rng.integers(len(feats)))
                masks = np.unpackbits(packed[i], axis=-1, count=size).astype(bool)  # (T, K, S, S)
                idx = sample_window(rng, len(masks), frames)
                areas = masks[idx[0]].reshape(masks.shape[1], -1).sum(1)
                candidates = np.flatnonzero(areas >= MIN_AREA)
            k = 0 if areas[0] >= MIN_AREA and rng.random() < 0.5 else int(rng.choice(candidates))
            c, lab = sample_prompt(masks[idx[0], k], rng, slots - 1)
            c, lab = slot_prompt(c, lab, slots)
            f_b.append(encoded(feats[i][idx]))
            i_b.append(images[i][idx])
            t_b.append(masks[idx, k].astype(np.float32))
            v_b.append((masks[idx, k].reshape(frames, -1).sum(1) > 0).astype(np.float32))
            c_b.append(c)
            l_b.append(lab)
            n_b.append(int((lab >= 0).sum()))
            for _ in range(extra_prompts):
                t = int(rng.choice(idx))
                seen = np.flatnonzero(masks[t].reshape(masks.shape[1], -1).sum(1) >= MIN_AREA)
                if not len(seen):
                    continue
                j = int(rng.choice(seen))
                c, lab = slot_prompt(*sample_prompt(masks[t, j], rng, slots - 1), slots)
                x_f.append(encoded(feats[i][t]))
                x_i.append(images[i][t])
                x_t.append(masks[t, j].astype(np.float32))
                x_c.append(c)
                x_l.append(lab)
                x_n.append(int((lab >= 0).sum()))
        extra = None if not x_f else tuple(torch.from_numpy(np.stack(a)) for a in (x_f, x_i, x_c, x_l, x_t)) + \
            (np.array(x_n),)
        loss, stats = window_loss(model, torch.from_numpy(np.stack(f_b)), torch.from_numpy(np.stack(i_b)),
                                  torch.from_numpy(np.stack(t_b)),
                                  torch.from_numpy(np.stack(v_b)), torch.from_numpy(np.stack(c_b)),
                                  torch.from_numpy(np.stack(l_b)), np.array(n_b), layouts, extra)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        window.append({"loss": loss.item(), **stats})
        step += 1
        if step % 50 == 0 or step in (steps, stop_after):
            tmp = checkpoint.with_name(checkpoint.name + ".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                        "feature_noise_db": feature_noise_db}, tmp)
            os.replace(tmp, checkpoint)
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            elapsed = time.perf_counter() - start
            extra_iou = f", single-frame prompts {100 * mean['extra_iou']:.1f}" if "extra_iou" in mean else ""
            log(f"step {step}/{steps} lr {opt.param_groups[0]['lr']:.2e} loss {mean['loss']:.4f} train IoU: "
                f"prompted frame {100 * mean['first_iou']:.1f}, tracked frames {100 * mean['tracked_iou']:.1f}"
                f"{extra_iou} "
                f"({(step - done_at_start) / elapsed * 60:.1f} steps/min, {elapsed / 60:.1f} min)")
            window.clear()
    model.eval()
    return model


def evaluate_tracker(model, count: int = 50, log: Callable[[str], None] = print) -> dict[str, float]:
    """J&F (points) on ``count`` held-out clips, each prompted with its target's tight box on frame 0, tracked
    by the PyTorch model through the same Tracker and memory bank the device runs."""
    from edgevision.models.sam2 import torch_graphs
    from edgevision.ops.video_metrics import j_and_f
    from edgevision.tasks.track import ClipSample, rollout
    from edgevision.tracker import Tracker

    model.eval()
    size = model.img_size
    tracker = Tracker.from_graphs(torch_graphs(model), model.head_spec(size), size)
    pairs = []
    for seed in clip_seeds("eval", count):
        clip = render_clip(seed, ClipSpec(size=size, length=CLIP_LENGTH))
        results = rollout(tracker, ClipSample(str(seed), clip.frames, clip.masks, (0,)))
        pairs += [(r.objects[0].mask, clip.masks[r.frame_index, 0]) for r in results[1:]]
    scores = j_and_f(pairs)
    log(f"J&F {scores['J&F']:.2f} (J {scores['J']:.2f}, F {scores['F']:.2f}) on {count} held-out clips")
    return scores


__all__ = ["evaluate_tracker", "memory_layouts", "slot_prompt", "train_tracker", "window_loss"]
