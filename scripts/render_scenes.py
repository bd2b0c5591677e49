"""Write synthetic scenes as plain JPEGs (no labels): unlabelled images for `edgevision distill`.

    python scripts/render_scenes.py distill-images --count 8000
    edgevision distill efficient-sam-demo --data distill-images --dim 96 --depth 4 --steps 3000 --out student.pt
    edgevision export efficient-sam-student --weights student.pt --target cpu --precision fp32

Seeds come from a training pool no demo model trains on (pool seed 9), so they overlap no eval set and no
teacher training scene.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2

from edgevision.data.synthetic import SceneSpec, render_scene
from edgevision.training import pool_seed_base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=8000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--pool-seed", type=int, default=9)
    args = ap.parse_args()
    if args.count < 1 or args.size < 16:
        ap.error("--count must be at least 1 and --size at least 16")
    args.out.mkdir(parents=True, exist_ok=True)
    spec = SceneSpec(size=(args.size, args.size), grid=max(1, args.size // 16))
    base = pool_seed_base(args.pool_seed)
    for i in range(args.count):
        path = args.out / f"scene-{base + i}.jpg"
        if path.is_file():
            continue
        image = render_scene(base + i, spec).image
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.jpg")
        cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        os.replace(tmp, path)
    print(f"{args.count} scenes in {args.out}")


if __name__ == "__main__":
    main()
