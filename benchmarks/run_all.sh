#!/usr/bin/env bash
# Every benchmark, one after another, each printing its own markdown; results go to benchmarks/out/.
# Run on a quiet machine: bash benchmarks/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/out
python benchmarks/bench_nms.py | tee benchmarks/out/nms.md
python benchmarks/bench_backends.py | tee benchmarks/out/backends.md
python benchmarks/bench_pipeline.py | tee benchmarks/out/pipeline.md
python benchmarks/bench_pipeline_memory.py | tee benchmarks/out/memory.md
python benchmarks/bench_targets.py | tee benchmarks/out/targets.md
python benchmarks/bench_cpus.py | tee benchmarks/out/cpus.md
ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_cpus.py | tee benchmarks/out/cpus_avx2.md
python benchmarks/bench_nncf_presets.py | tee benchmarks/out/nncf_presets.md
python benchmarks/bench_onnx_quantizers.py | tee benchmarks/out/onnx_quantizers.md
