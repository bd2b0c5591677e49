"""One `edgevision distill` training step, the student's attention fused against written out, side by side.

    python benchmarks/bench_distill_step.py [--teacher efficient-sam-demo] [--dim 96 --depth 4 --heads 3]
                                            [--batch 8] [--runs 6]

A step is what `distill` does per batch: the teacher encoder's forward without gradients, the student encoder's
forward and backward, gradient clipping and an AdamW update. The "explicit" row replaces the attention forward
of every ViT block with the matmul-softmax-matmul that eval mode (and every export) runs, so the only difference
between the rows is the training kernel. Runs are interleaved in one process (edgevision.check.bench).
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

from edgevision.check.bench import interleaved, latency_stats
from edgevision.distill import student_config
from edgevision.hardware import cpu_info, cpu_line
from edgevision.models import vit
from edgevision.models.loading import build_model
from edgevision.models.registry import get_variant


def explicit_attention(self: vit.Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    return self.proj(out.transpose(1, 2).reshape(b, n, c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="efficient-sam-demo")
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()

    torch.manual_seed(0)
    variant = get_variant(args.teacher)
    teacher = build_model(variant).eval()
    config = student_config(variant, teacher, img_size=None, embed_dim=args.dim, depth=args.depth,
                            num_heads=args.heads)
    student = get_variant("efficient-sam-student").build(
        config={k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}).train()
    params = list(student.image_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    size = teacher.img_size
    images = torch.randn(args.batch, 3, size, size)

    def step() -> None:
        with torch.no_grad():
            target = teacher.embed(images)
        loss = F.mse_loss(student.embed(images), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    fused_forward = vit.Attention.forward

    def with_forward(forward):
        def run() -> None:
            vit.Attention.forward = forward
            try:
                step()
            finally:
                vit.Attention.forward = fused_forward
        return run

    times = interleaved({"fused (training now)": with_forward(fused_forward),
                         "explicit (as eval and export)": with_forward(explicit_attention)},
                        runs=args.runs, warmup=1, block=2)
    tokens = (size // 16) ** 2
    print(f"CPU: {cpu_line(cpu_info().to_json())}; Python {platform.python_version()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"teacher {args.teacher} at {size} px ({tokens} tokens); student dim {args.dim}, {args.depth} blocks, "
          f"{args.heads} heads; batch {args.batch}\n")
    print("| student attention in training | median s/step | images/s | vs explicit |")
    print("|---|---|---|---|")
    base = latency_stats(times["explicit (as eval and export)"])["median_ms"]
    for name, seconds in times.items():
        median = latency_stats(seconds)["median_ms"]
        print(f"| {name} | {median / 1000:.2f} | {args.batch / median * 1000:.1f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
