"""How much encoder error the FP32 tracker tolerates over long clips: the issue-16 floors under random noise.

    python scripts/make_clips.py drift-clips --count 5 --length 300
    edgevision export sam-track-demo --target cpu --precision fp32 --out tracker-fp32
    python scripts/tracker_noise_sensitivity.py tracker-fp32 drift-clips --sqnr 60 55 50 45 40

For each SQNR (dB), the FP32 bundle runs exactly as `edgevision check BUNDLE --data CLIPS` runs it, except that
Gaussian noise at that signal-to-noise ratio is added to the image encoder's features (``vision_features``, and the
same noise to ``no_memory_features``, which is the same tensor plus a learnt constant). The noise is seeded by the
frame's pixels and ``--seeds``, so a run is repeatable. The comparison is the check's own: per-frame mask IoU against the FP32
PyTorch tracker, its mean and its worst frame, per clip.

An INT8 encoder's features sit at about 35-48 dB against FP32 (RESULTS, session 34); this asks whether the FP32
tracker itself keeps the floors (mean 95, no frame below 80) when its encoder is perturbed at random by that much
or less.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np


class NoisyEncoder:
    """A runner whose image encoder's features carry Gaussian noise at ``sqnr_db``; every other graph as is."""

    def __init__(self, inner, sqnr_db: float, seed: int = 0) -> None:
        self.inner, self.scale, self.seed = inner, 10 ** (-sqnr_db / 20), seed

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, graph: str, feeds: dict) -> dict:
        out = self.inner.run(graph, feeds)
        if graph != "image_encoder":
            return out
        features = out["vision_features"]
        pixels = zlib.crc32(np.ascontiguousarray(feeds["image"]).tobytes())
        rng = np.random.default_rng([self.seed, pixels] if self.seed else pixels)
        noise = rng.standard_normal(features.shape).astype(np.float32) * np.sqrt(np.mean(features ** 2)) * self.scale
        return {**out, "vision_features": features + noise, "no_memory_features": out["no_memory_features"] + noise}


def main() -> None:
    import edgevision.check.compare as compare
    from edgevision.hardware import cpu_info, cpu_line

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="an FP32 tracker bundle (sam-track-demo)")
    ap.add_argument("clips", type=Path, help="a folder of clips, as `check --data` takes")
    ap.add_argument("--sqnr", type=float, nargs="+", default=[60, 55, 50, 45, 40])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="noise draws per SQNR")
    ap.add_argument("--out", type=Path, default=Path("noise-reports"))
    args = ap.parse_args()

    open_runner = compare.open_runner
    print(f"CPU: {cpu_line(cpu_info().to_json())}")
    print("| encoder SQNR dB | noise seed | mean per-frame IoU (floor 95) | worst frame (floor 80) | per clip: mean / worst |")
    print("|---|---|---|---|---|")
    for db, seed in [(db, seed) for db in args.sqnr for seed in args.seeds]:
        compare.open_runner = lambda *a, db=db, seed=seed, **k: NoisyEncoder(open_runner(*a, **k), db, seed)
        try:
            report = compare.check_bundle(args.bundle, data=args.clips, out_dir=args.out / f"{db:g}dB-{seed}")
        finally:
            compare.open_runner = open_runner
        clips = sorted(report["worst_images"], key=lambda w: w["clip"])
        per_clip = ", ".join(f"{w['clip']} {100 * w['mean_mask_iou']:.1f} / {100 * w['min_frame_iou']:.1f}"
                             for w in clips)
        agreement = report["agreement"]
        print(f"| {db:g} | {seed} | {agreement['mask_iou']:.2f} | {agreement['min_frame_iou']:.2f} | {per_clip} |", flush=True)


if __name__ == "__main__":
    main()
