"""Train the bundled demo weights from scratch on procedural scenes.

    python scripts/train_demo_weights.py fast-yolo-demo --minutes 25
    python scripts/train_demo_weights.py mobile-unet --minutes 25

Writes edgevision/models/weights/<model>.pt as an fp16 state_dict (atomically), deterministic given the seed
and the number of steps the time budget allows.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from edgevision.models.registry import get_variant
from edgevision.training import train

DEFAULTS = {  # pool size, batch, learning rate
    "fast-yolo-demo": (24000, 32, 2e-3),
    "mobile-unet": (12000, 16, 3e-3),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(DEFAULTS))
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variant = get_variant(args.model)
    pool, batch, lr = DEFAULTS[args.model]
    model = train(variant, minutes=args.minutes, pool_size=pool, batch=batch, lr=lr, seed=args.seed)
    out = args.out or variant.weights_path
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    torch.save(sd, tmp)
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
