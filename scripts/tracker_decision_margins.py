"""How many of the FP32 tracker's own decisions a bundle's error can be expected to flip over long clips.

    python scripts/make_clips.py drift-clips --count 5 --length 300
    edgevision export sam-track-demo --target cpu --precision int8 --out tracker-int8
    python scripts/tracker_decision_margins.py tracker-int8 drift-clips

The tracker makes two hard calls per object and frame: present (object score logit > 0) and which multimask
candidate to keep (best predicted IoU). A call flips when the bundle's error in the quantity is larger than the
FP32 tracker's distance from the threshold on that frame, and a flip shows as a frame of IoU near 0 against FP32
(and can feed back through the memory).

Both trackers run each clip side by side as `edgevision check BUNDLE --data CLIPS` runs them. On the frames where
they still agree (object mask IoU >= 0.9, both present), the bundle's error is measured: |score - score_FP32| and
|margin - margin_FP32|. Then, for every object and frame of the FP32 roll-out, the chance that an error drawn from
that distribution exceeds the FP32 distance from the threshold is summed: the expected number of flipped calls
over the clips if errors were independent of where the FP32 tracker stands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def exceed_count(errors: np.ndarray, distances: np.ndarray) -> float:
    """Sum over ``distances`` of the fraction of ``errors`` larger than each: expected flips."""
    errors = np.sort(np.asarray(errors, np.float64))
    if not errors.size:
        return float("nan")
    return float(np.sum(1.0 - np.searchsorted(errors, np.asarray(distances, np.float64), side="right") / errors.size))


def main() -> None:
    from edgevision.bundle import load_bundle
    from edgevision.check.reference import reference_runner
    from edgevision.data.clips import load_clips
    from edgevision.hardware import cpu_info, cpu_line
    from edgevision.ops.prompts import mask_iou
    from edgevision.runtime.base import open_runner
    from edgevision.tasks.track import rollout
    from edgevision.tracker import Tracker

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="a tracker bundle (sam-track-demo)")
    ap.add_argument("clips", type=Path, help="a folder of clips, as `check --data` takes")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    artifact = open_runner(bundle, None, None)
    reference = reference_runner(bundle, None, artifact.threads, cache=True)
    print(f"CPU: {cpu_line(cpu_info().to_json())}; bundle {bundle.meta.target} {bundle.meta.precision}")
    score_err, margin_err, scores, margins, transitions = [], [], [], [], []
    presence_differs = masks_differ = 0
    for clip in load_clips(args.clips):
        runs = [rollout(Tracker.from_runner(r, bundle.meta.head, bundle.meta.imgsz), clip)
                for r in (reference, artifact)]
        last: dict[int, float] = {}
        for ref, art in zip(runs[0][1:], runs[1][1:]):
            theirs = art.by_id()
            for obj in ref.objects:
                a = theirs[obj.obj_id]
                scores.append(abs(obj.score))
                if obj.choice_margin is not None:
                    margins.append(obj.choice_margin)
                if obj.obj_id in last and (last[obj.obj_id] > 0) != obj.present:
                    transitions.append(min(abs(last[obj.obj_id]), abs(obj.score)))
                last[obj.obj_id] = obj.score
                presence_differs += obj.present != a.present
                same = obj.present and a.present and mask_iou(obj.mask, a.mask) >= 0.9
                if same:
                    score_err.append(abs(a.score - obj.score))
                    if obj.choice_margin is not None and a.choice_margin is not None:
                        margin_err.append(abs(a.choice_margin - obj.choice_margin))
                elif obj.present and a.present and obj.choice_margin is not None:
                    masks_differ += 1
    score_err, margin_err = np.array(score_err), np.array(margin_err)
    print(f"object-frames: {len(scores)}; FP32 presence transitions: {len(transitions)}")
    for name, err, dist in (("presence (object score logit)", score_err, scores),
                            ("mask choice (predicted IoU margin)", margin_err, margins)):
        q = np.percentile(err, [50, 90, 99, 100]) if err.size else [np.nan] * 4
        print(f"{name}: bundle error median {q[0]:.4f}, p90 {q[1]:.4f}, p99 {q[2]:.4f}, max {q[3]:.4f} "
              f"({err.size} agreeing object-frames); FP32 frames within the p90 error of the threshold: "
              f"{int(np.sum(np.asarray(dist) < q[1]))}; expected flips: {exceed_count(err, dist):.2f}")
    if transitions:
        print(f"FP32 presence transitions: nearest frame's |logit| median {np.median(transitions):.3f}, "
              f"min {np.min(transitions):.3f}; expected flips at them: {exceed_count(score_err, transitions):.2f}")
    print(f"observed: presence calls that differ {presence_differs}, present-in-both frames with disjoint-ish "
          f"masks (IoU < 0.9) {masks_differ}")


if __name__ == "__main__":
    main()
