"""Video object tracking, SAM 2 style: four graphs and a memory bank per object (``edgevision.tracker``).

Evaluation is per clip, not per image: each clip's objects are prompted with their tight ground-truth box on
the first frame and tracked through the rest, by the reference and by the artifact, each with its own memory,
so errors that feed back through the memory count. Metrics, in points (0-100):

* against ground truth, DAVIS's region similarity J, boundary accuracy F and their mean ``J&F``, over every
  prompted object on every frame after the first;
* against the FP32 reference, the mean per-frame mask IoU (``mask_iou``; two empty masks agree fully) and the
  worst frame's (``min_frame_iou``).

Calibration and golden data are recorded from tracker roll-outs (the memory attention's inputs are what earlier
frames left in the bank, so the graphs do not chain on one image).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edgevision.data.clips import ClipSample
from edgevision.data.samples import EvalSet
from edgevision.ops.prompts import mask_iou
from edgevision.ops.results import ObjectResult, TrackedObjects
from edgevision.tasks.base import Accumulator, Task

DECODER = "mask_decoder"
CLIP_SIZE, CLIP_LENGTH = 256, 24  # synthetic clips: rendered at 256 px, resized to the model's input by the tracker
MAX_PROMPTED = 3  # objects prompted per synthetic clip: the target and up to two others


class _LazyClips(Sequence):
    """Synthetic clips rendered on access (a clip of 24 frames at 256 px is 4.7 MB)."""

    def __init__(self, seeds: list[int], size: int, length: int, prompted: int) -> None:
        self.seeds, self.size, self.length, self.prompted = seeds, size, length, prompted

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        from edgevision.data.tracking_clips import ClipSpec, render_clip

        clip = render_clip(self.seeds[i], ClipSpec(size=self.size, length=self.length))
        visible = [k for k in range(clip.masks.shape[1]) if clip.masks[0, k].sum() >= 30][: self.prompted]
        if 0 not in visible:  # the target is always prompted
            visible = [0, *visible[: self.prompted - 1]]
        return ClipSample(f"clip-{self.seeds[i]}", clip.frames, clip.masks, tuple(visible))


def synthetic_clips(count: int, seed: int, *, size: int = CLIP_SIZE, length: int = CLIP_LENGTH,
                    prompted: int = MAX_PROMPTED) -> EvalSet:
    from edgevision.data.tracking_clips import clip_seeds

    seeds = [s + seed for s in clip_seeds("eval", count)]
    return EvalSet(f"synthetic clips ({count} x {length} frames, seed {seed}, {size}px)",
                   _LazyClips(seeds, size, length, prompted), labelled=True)


# ------------------------------------------------------------------------------------------------ roll-outs
def rollout(tracker, clip: ClipSample, on_frame: Callable[[int, TrackedObjects], None] | None = None
            ) -> list[TrackedObjects]:
    """Prompt the clip's objects with their boxes on frame 0, then track every later frame; the results per
    frame (frame 0's are the prompted masks)."""
    tracker.reset()
    first = [tracker.add_prompt(clip.frames[0], obj_id=k, box=clip.box(k)) for k in clip.prompted]
    results = [TrackedObjects(first, 0)]
    if on_frame:
        on_frame(0, results[0])
    for t in range(1, len(clip.frames)):
        out = tracker.track(clip.frames[t])
        results.append(TrackedObjects(list(out.values()), t))
        if on_frame:
            on_frame(t, results[-1])
    return results


def record_feeds(graphs: Mapping[str, Callable], make_tracker: Callable[[Mapping[str, Callable]], object],
                 clips: Sequence[ClipSample], count: int, say: Callable[[str], None] | None = None
                 ) -> dict[str, list[dict]]:
    """Every graph's inputs, as the tracker calls it while tracking ``clips``, until each graph has ``count``
    (frames spread over as many clips as that takes)."""
    feeds: dict[str, list[dict]] = {name: [] for name in graphs}

    def recording(name: str, fn: Callable) -> Callable:
        def call(feed: dict) -> dict:
            if len(feeds[name]) < count:
                feeds[name].append({k: np.array(v, copy=True) for k, v in feed.items()})
            return fn(feed)
        return call

    tracker = make_tracker({name: recording(name, fn) for name, fn in graphs.items()})
    for i, clip in enumerate(clips):
        if all(len(v) >= count for v in feeds.values()):
            break
        if say:
            say(f"tracker roll-out on {clip.name} ({i + 1}/{len(clips)})")
        rollout(tracker, clip)
    return feeds


# A tracked object keeps the candidate mask with the best predicted IoU; closer than this, the rounding of any
# precision below FP32 can swap two candidates, which may cover different objects.
TIE_MARGIN = 0.01


# An object is present when its score logit is positive; within this of zero, a small perturbation flips the call.
PRESENCE_MARGIN = 1.0


def tie_notes(worst: Sequence[dict]) -> list[str]:
    """Explain a worst frame where the artifact's mask left the reference's object because the FP32 tracker
    itself was choosing between near-equal candidates: then no quantization scheme is at fault, the weights
    are (the gate stays)."""
    notes = []
    for w in worst:
        margin = w.get("reference_choice_margin")
        if margin is not None and margin < TIE_MARGIN and w.get("object_iou", 1.0) < 0.5:
            notes.append(f"worst frame: {w['clip']} frame {w['frame']}, object {w['object']} "
                         f"(IoU {w['object_iou']:.3f} against FP32): a mask-choice tie in the FP32 tracker itself, whose best two candidate "
                         f"masks were predicted {margin:.4f} apart (under {TIE_MARGIN}), so any rounding can swap "
                         f"them; a better-trained model widens such margins, a different quantization scheme only "
                         f"moves the tie")
        ref_score, art_score = w.get("reference_object_score"), w.get("artifact_object_score")
        if (ref_score is not None and art_score is not None and (ref_score > 0) != (art_score > 0)
                and abs(ref_score) < PRESENCE_MARGIN and w.get("object_iou", 1.0) < 0.5):
            notes.append(f"worst frame: {w['clip']} frame {w['frame']}, object {w['object']} "
                         f"(IoU {w['object_iou']:.3f} against FP32): the FP32 tracker's presence call was close, "
                         f"object score logit {ref_score:+.2f} against the artifact's {art_score:+.2f} (present "
                         f"above 0), so the object is shown by one tracker and hidden by the other on this frame")
    return notes


# ------------------------------------------------------------------------------------------- the task
class TrackPostprocessor:
    """One ``mask_decoder`` output -> TrackedObjects with one object: the mask with the highest predicted IoU
    at the decoder's resolution (golden agreement, where no tracker runs)."""

    def __init__(self, head: dict, imgsz: int, threshold: float = 0.0, **_: object) -> None:
        self.threshold = threshold

    def __call__(self, outputs: dict[str, np.ndarray], geometry=None) -> TrackedObjects:
        masks, ious = outputs["low_res_masks"], outputs["iou_predictions"]
        j = int(np.argmax(ious))
        score = float(np.asarray(outputs["object_score_logits"]).reshape(-1)[0])
        ptr = outputs["obj_ptrs"][j]
        return TrackedObjects([ObjectResult(0, masks[j] > self.threshold, masks[j], score, ptr)])


class TrackAccumulator(Accumulator):
    """Against a ClipSample: J and F per object and frame after the first. Against reference results (a
    TrackedObjects, or a list of them for a clip): per-frame IoU of each object's mask, matched by id."""

    def __init__(self) -> None:
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.frame_ious: list[float] = []
        self.worst_frame: dict | None = None  # the lowest frame's least-agreeing object, and both mask choices

    def add(self, truth, result) -> None:
        if isinstance(truth, ClipSample):
            for frame in result[1 : len(truth.masks)]:  # a folder clip may label only its first frame
                for obj in frame.objects:
                    self.pairs.append((obj.mask, truth.masks[frame.frame_index, obj.obj_id]))
            return
        refs, arts = (truth, result) if isinstance(truth, list) else ([truth], [result])
        for ref, art in zip(refs, arts):
            if ref.frame_index == 0 and len(refs) > 1:
                continue  # the prompted frame: compared through every later one
            theirs = art.by_id()
            ious = [mask_iou(o.mask, theirs[o.obj_id].mask) if o.obj_id in theirs else 0.0 for o in ref.objects]
            if ious:
                self.frame_ious.append(float(np.mean(ious)))
                if self.worst_frame is None or self.frame_ious[-1] < self.worst_frame["frame_iou"]:
                    k = int(np.argmin(ious))
                    obj = ref.objects[k]
                    self.worst_frame = {"frame": ref.frame_index, "frame_iou": self.frame_ious[-1],
                                        "object": int(obj.obj_id), "object_iou": float(ious[k]),
                                        "reference_choice_margin": obj.choice_margin,
                                        "artifact_choice_margin": getattr(theirs.get(obj.obj_id), "choice_margin",
                                                                          None),
                                        "reference_object_score": obj.score,
                                        "artifact_object_score": getattr(theirs.get(obj.obj_id), "score", None)}

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.pairs:
            from edgevision.ops.video_metrics import j_and_f

            out.update(j_and_f(self.pairs))
        if self.frame_ious:
            out["mask_iou"] = 100.0 * float(np.mean(self.frame_ious))
            out["min_frame_iou"] = 100.0 * float(np.min(self.frame_ious))
        return out


class TrackTask(Task):
    name = "track"
    result_type = TrackedObjects
    postprocessors = {"tracker": "edgevision.tasks.track:TrackPostprocessor"}
    agreement = ("mask_iou", "mask_iou")
    agreement_extras = {"min_frame_iou": "min_frame_iou"}
    json_key = "objects"
    plot_marker = "*"
    default_recipe = "default-track.yaml"
    graph = DECODER

    def infer(self, runner, batch):
        raise TypeError("a tracker needs prompts and a stream: use Tracker(bundle) (add_prompt, then track) or "
                        "`edgevision run TRACKER --source clip.mp4 --box x0,y0,x1,y1`")

    def accumulator(self, labels: Sequence[str], recipe) -> TrackAccumulator:
        return TrackAccumulator()

    def synthetic_eval_set(self, imgsz: int, stride: int, count: int, seed: int) -> EvalSet:
        return synthetic_clips(count, seed)

    def evaluate_runners(self, runners: Mapping, eval_set: EvalSet, io, progress=None) -> dict:
        """Each runner tracks each clip with its own tracker; J&F per runner against ground truth, per-frame
        mask IoU of the artifact against the reference."""
        from edgevision.tracker import Tracker

        acc = {name: TrackAccumulator() for name in runners} if eval_set.labelled else {}
        paired = "reference" in runners and "artifact" in runners
        agreement = TrackAccumulator() if paired else None
        trackers = {name: Tracker.from_runner(r, io.head, io.imgsz) for name, r in runners.items()}
        worst, count = [], 0
        for clip in eval_set.samples:
            results = {name: rollout(t, clip) for name, t in trackers.items()}
            for name, a in acc.items():
                if clip.masks is not None:
                    a.add(clip, results[name])
            if paired:
                agreement.add(results["reference"], results["artifact"])
                one = TrackAccumulator()
                one.add(results["reference"], results["artifact"])
                if one.frame_ious:
                    w = one.worst_frame
                    worst.append({"clip": clip.name, "mean_mask_iou": round(float(np.mean(one.frame_ious)), 4),
                                  "min_frame_iou": round(w["frame_iou"], 4), "frame": w["frame"],
                                  "object": w["object"], "object_iou": round(w["object_iou"], 4),
                                  **{k: None if w[k] is None else round(w[k], 4)
                                     for k in ("reference_choice_margin", "artifact_choice_margin",
                                               "reference_object_score", "artifact_object_score")}})
            count += 1
            if progress:
                progress(count)
        worst.sort(key=lambda w: w["min_frame_iou"])
        return {"metrics": {name: a.result() for name, a in acc.items()},
                "agreement": self.agreement_figures(agreement.result()) if paired else {},
                "images": count, "worst": worst[:5], "notes": tie_notes(worst[:1])}

    def bench_calls(self, runner, meta, frame_rgb: np.ndarray) -> dict[str, Callable[[], object]]:
        """One tracked frame with one object (image encoder, memory attention over a full bank, decoder, memory
        encoder and the bank): at the input size, and on the camera-sized frame (resize and mask upscaling
        included)."""
        import cv2

        from edgevision.tracker import Tracker

        calls = {}
        net = cv2.resize(frame_rgb, (meta.imgsz, meta.imgsz), interpolation=cv2.INTER_LINEAR)
        for name, frame in (("artifact", net), ("end_to_end", frame_rgb)):
            tracker = Tracker.from_runner(runner, meta.head, meta.imgsz)
            h, w = frame.shape[:2]
            tracker.add_prompt(frame, 1, box=(w * 0.3, h * 0.3, w * 0.7, h * 0.7))
            for _ in range(8):  # fill the bank: steady-state tracking
                tracker.track(frame)
            calls[name] = (lambda t=tracker, f=frame: t.track(f))
        return calls

    def eval_set_from(self, path) -> EvalSet:
        from edgevision.data.clips import clip_eval_set

        return clip_eval_set(path)

    def rollout_feeds(self, graphs: Mapping[str, Callable], head: dict, imgsz: int, count: int, seed: int,
                      data=None, say=None) -> tuple[dict[str, list[dict]], str]:
        """Inputs of every graph recorded while tracking clips: ``data`` (a folder of clips) or synthetic ones."""
        from edgevision.tracker import Tracker

        clips = load_clip_folders(data) if data is not None else \
            synthetic_clips(max(2, -(-count // (CLIP_LENGTH - 1))) + 2, seed + 7).samples
        feeds = record_feeds(graphs, lambda g: Tracker.from_graphs(g, head, imgsz), clips, count, say)
        source = str(data) if data is not None else f"tracker roll-outs on synthetic clips (seed {seed + 7})"
        return feeds, source

    def draw(self, frame_bgr: np.ndarray, result: TrackedObjects, labels: Sequence[str]) -> np.ndarray:
        from edgevision.pipeline.render import draw_tracks

        return draw_tracks(frame_bgr, result)


def load_clip_folders(path) -> list[ClipSample]:
    from edgevision.data.clips import load_clips

    return load_clips(path)


__all__ = ["ClipSample", "TrackAccumulator", "TrackPostprocessor", "TrackTask", "record_feeds", "rollout",
           "synthetic_clips"]
