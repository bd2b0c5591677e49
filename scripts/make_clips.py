"""Write synthetic tracking clips as clip folders (frames/ and masks/), for `edgevision check TRACKER --data`.

    python scripts/make_clips.py drift-clips --count 5 --length 300     # the drift check: 300-frame clips
    edgevision check bundles/sam-track-demo-cpu-int8 --data drift-clips  # mask_iou / min_frame_iou vs FP32

Long clips bounce their objects off the frame edges (they would otherwise drift out for good). Seeds come from
the evaluation split, so they never overlap training clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgevision.data.clips import write_clip
from edgevision.data.tracking_clips import ClipSpec, clip_seeds, render_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--length", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--offset", type=int, default=5000, help="first eval-split seed used (clear of check's own)")
    args = ap.parse_args()
    spec = ClipSpec(size=args.size, length=args.length, bounce=args.length > 48)
    for seed in clip_seeds("eval", args.offset + args.count)[args.offset:]:
        clip = render_clip(seed, spec)
        # every object visible on frame 0 is prompted there (check prompts what the first mask shows)
        keep = [k for k in range(clip.masks.shape[1]) if clip.masks[0, k].sum() >= 30][:3]
        folder = write_clip(args.out / f"clip-{seed}", clip.frames, clip.masks[:, keep])
        print(f"wrote {folder} ({args.length} frames, {len(keep)} objects)")


if __name__ == "__main__":
    main()
