"""NNCF's two presets on OpenVINO's CPU plugin, side by side: symmetric int8 activations ("performance", the
intel-npu profile's nncf_preset) against asymmetric ("mixed", the default before 2026-11-27 session 4).

    python benchmarks/bench_nncf_presets.py [--runs 200] [--models fast-yolo fast-yolo-demo mobile-unet]

For each model the same FP32 ONNX graph (edgevision's uint8-input export; `fast-yolo` at 448 with random init,
the others with their bundled weights) is quantized twice by `nncf.quantize` on the same calibration batches
and ignored scope as the intel-npu exporter uses, then both IRs are compiled with edgevision's OpenVINO runner
settings and timed interleaved in blocks (edgevision.check.bench.interleaved). Accuracy of each preset comes
from `edgevision check` on an exported bundle, not from here.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from edgevision.check.bench import interleaved, latency_stats
from edgevision.config import load_recipe
from edgevision.export import export_bundle
from edgevision.export.nncf_quantize import openvino_ignored_types
from edgevision.data.datasets import calibration_set
from edgevision.models.registry import get_variant


def main() -> None:
    import nncf
    import numpy as np
    import openvino as ov

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--models", nargs="+", default=["fast-yolo", "fast-yolo-demo", "mobile-unet"])
    args = ap.parse_args()
    nncf.set_log_level(logging.ERROR)
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": "f32"}
    print("| model | mixed (asymmetric) median / min ms | performance (symmetric) median / min ms "
          "| speed-up of performance |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            variant = get_variant(model)
            fp32 = export_bundle(model, "cpu", "fp32", Path(tmp) / model, random_weights=model == "fast-yolo",
                                 measure_reference=False)
            recipe = load_recipe(variant.name, variant.task)
            calib = calibration_set(None, fp32.meta.imgsz, variant.stride, variant.preprocess.resize,
                                    limit=recipe.quantization.subset_size)
            types = openvino_ignored_types(recipe.quantization)
            scope = nncf.IgnoredScope(types=types, names=list(recipe.quantization.ignored_names), validate=False)
            requests = {}
            for name, preset in (("mixed", nncf.QuantizationPreset.MIXED),
                                 ("performance", nncf.QuantizationPreset.PERFORMANCE)):
                source = ov.convert_model(str(fp32.graph_path("model")))
                quantized = nncf.quantize(source, nncf.Dataset([{"image": b} for b in calib.batches]), preset=preset,
                                          subset_size=min(recipe.quantization.subset_size, len(calib.batches)),
                                          ignored_scope=scope)
                requests[name] = core.compile_model(quantized, "CPU", config).create_infer_request()
            batch = np.ascontiguousarray(calib.batches[0])
            times = interleaved({k: (lambda r=r: r.infer({"image": batch})) for k, r in requests.items()},
                                args.runs, warmup=10)
            s = {k: latency_stats(v) for k, v in times.items()}
            m, p = s["mixed"], s["performance"]
            print(f"| {model} at {fp32.meta.imgsz} | {m['median_ms']:.2f} / {m['min_ms']:.2f} | "
                  f"{p['median_ms']:.2f} / {p['min_ms']:.2f} | {m['median_ms'] / p['median_ms']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
