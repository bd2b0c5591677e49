"""Train the bundled demo weights from scratch on procedural scenes.

    python scripts/train_demo_weights.py fast-yolo-demo      # ~30 min on the 2-core dev machine
    python scripts/train_demo_weights.py mobile-unet         # ~25 min
    python scripts/train_demo_weights.py deit-tiny-demo      # hours; resumable: run the same line again
    python scripts/train_demo_weights.py efficient-sam-demo  # about an hour; resumable the same way
    python scripts/train_demo_weights.py sam-track-demo      # hours, in resumable stages (--stop-after N)

Writes edgevision/models/weights/<model>.pt as an fp16 state_dict (atomically). Deterministic given the seed
and step count (same machine and torch build), then prints the FP32 accuracy on the synthetic eval set.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from edgevision.models.registry import get_variant
from edgevision.training import train
from eval_synthetic import report_accuracy  # scripts/ is on sys.path when run as a script

DEFAULTS = {  # scenes rendered, batch, learning rate, steps
    "fast-yolo-demo": (30000, 32, 2e-3, 2400),
    "mobile-unet": (12000, 16, 3e-3, 1800),
    "deit-tiny-demo": (60000, 64, 5e-4, 4000),
    "efficient-sam-demo": (8000, 8, 2e-4, 2000),  # batch: images; each is decoded with 4 prompts
    "sam-track-demo": (600, 8, 4e-4, 4000),  # pool: clips of 24 frames; batch: 8-frame windows
}
CHECKPOINTS = Path(".train")  # resumable state of long runs (git ignores it)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(DEFAULTS))
    ap.add_argument("--steps", type=int, help="override the model's default step count")
    ap.add_argument("--init", type=Path, help="start from these weights (a second, fine-tuning stage)")
    ap.add_argument("--lr", type=float, help="override the model's default learning rate")
    ap.add_argument("--crop-until", type=float, default=0.7, help="segmentation: fraction of steps on crops")
    ap.add_argument("--pool", type=int, help="override the number of scenes rendered")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool-seed", type=int, default=0,
                    help="render a disjoint pool of scenes (fine-tuning stages on new data)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--restart", action="store_true", help="classifiers and SAM: ignore the checkpoint in .train/")
    ap.add_argument("--loose-box-share", type=float, default=0.5,
                    help="efficient-sam-demo: share of box prompts loosened as a hand-dragged box (the rest tight)")
    ap.add_argument("--stop-after", type=int, help="tracker: stop at this step (a resumable stage of the schedule)")
    ap.add_argument("--encoder-from", type=Path,
                    help="tracker: take the frozen image encoder from these efficient-sam weights")
    ap.add_argument("--feature-noise-db", type=float,
                    help="tracker: train under Gaussian noise this many dB below the encoder features' power "
                         "(an INT8 encoder is at 35-48 dB); a fine-tuning stage for decisions that survive it")
    ap.add_argument("--int8-aware", action="store_true",
                    help="fine-tune under simulated symmetric INT8 (use with --init and a small --lr)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variant = get_variant(args.model)
    pool, batch, lr, steps = DEFAULTS[args.model]
    if variant.task == "track":
        from edgevision.training_track import train_tracker

        model = train_tracker(variant, steps=args.steps or steps, pool_size=args.pool or pool, batch=batch,
                              lr=args.lr or lr, seed=args.seed, init=args.init,
                              checkpoint=CHECKPOINTS / f"{args.model}.pt", resume=not args.restart,
                              stop_after=args.stop_after, encoder_from=args.encoder_from,
                              feature_noise_db=args.feature_noise_db)
    elif variant.task == "prompt-segment":
        from edgevision.training_prompt import train_prompt_segmenter

        stage = f".pool{args.pool_seed}" if args.init else ""
        model = train_prompt_segmenter(variant, steps=args.steps or steps, pool_size=args.pool or pool, batch=batch,
                                       lr=args.lr or lr, seed=args.seed, init=args.init, pool_seed=args.pool_seed,
                                       checkpoint=CHECKPOINTS / f"{args.model}{stage}.pt", resume=not args.restart,
                                       loose_box_share=args.loose_box_share)
    elif variant.task == "classify":
        from edgevision.training import train_classifier

        # a later stage (--init) keeps its own checkpoint and pool, named by its pool seed
        stage = f".pool{args.pool_seed}" if args.init else ""
        model = train_classifier(variant, steps=args.steps or steps, pool_size=args.pool or pool, batch=batch,
                                 lr=args.lr or lr, seed=args.seed, checkpoint=CHECKPOINTS / f"{args.model}{stage}.pt",
                                 resume=not args.restart, init=args.init, pool_seed=args.pool_seed)
    else:
        model = train(variant, steps=args.steps or steps, pool_size=args.pool or pool, batch=batch,
                      lr=args.lr or lr, seed=args.seed, pool_seed=args.pool_seed, crop_until=args.crop_until,
                      init=args.init, int8_aware=args.int8_aware)
    out = args.out or variant.weights_path
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    torch.save(sd, tmp)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; weights are package data
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    report_accuracy(variant, model)


if __name__ == "__main__":
    main()
