"""What CPU this is, as far as INT8 inference cares: its model, the instruction sets INT8 kernels use, and any
cap an environment variable puts on them. Every bench, check, baseline and matrix report carries this, because
ratios and even INT8 rounding differ between an AVX2-only CPU and one with VNNI or AMX.

Pure Python (reads /proc/cpuinfo), safe on the device side.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field

# /proc/cpuinfo flag -> the name reports use. Order: weakest to strongest INT8 dot product.
X86_INT8_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512bw": "AVX-512BW",
    "avx_vnni": "AVX-VNNI",
    "avx512_vnni": "AVX-512 VNNI",
    "amx_int8": "AMX-INT8",
}
ARM_INT8_FLAGS = {"asimd": "NEON", "asimddp": "NEON dot product", "i8mm": "I8MM"}
# Instruction sets whose INT8 dot product accumulates u8 x s8 straight into int32 (no 16-bit intermediate).
INT8_DOT_ISAS = ("AVX-VNNI", "AVX-512 VNNI", "AMX-INT8", "NEON dot product", "I8MM")
# ONEDNN_MAX_CPU_ISA values that cap oneDNN (and with it OpenVINO's CPU plugin) below VNNI.
ONEDNN_BELOW_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str
    isa: tuple[str, ...]  # the INT8-relevant instruction sets present, by X86_INT8_FLAGS / ARM_INT8_FLAGS name
    cores: int
    onednn_cap: str | None = None  # ONEDNN_MAX_CPU_ISA, when set
    notes: tuple[str, ...] = field(default=())

    @property
    def int8_dot(self) -> str | None:
        """The instruction that gives this CPU fast, exact INT8 dot products, or None."""
        found = [i for i in INT8_DOT_ISAS if i in self.isa]
        return found[-1] if found else None

    @property
    def kind(self) -> str:
        """A short class name for tables: 'amx', 'vnni', 'avx512', 'avx2', 'arm-dotprod', 'arm' or 'other'."""
        if "AMX-INT8" in self.isa:
            return "amx"
        if "AVX-512 VNNI" in self.isa or "AVX-VNNI" in self.isa:
            return "vnni"
        if "AVX-512BW" in self.isa:
            return "avx512"
        if "AVX2" in self.isa:
            return "avx2"
        if "NEON dot product" in self.isa:
            return "arm-dotprod"
        return "arm" if "NEON" in self.isa else "other"

    @property
    def openvino_int8_dot(self) -> str | None:
        """The INT8 dot product OpenVINO's CPU plugin may use here: none when ONEDNN_MAX_CPU_ISA caps oneDNN
        below VNNI (OpenVINO's own JIT kernels ignore the cap, so the executed graph is the final word)."""
        if self.onednn_cap and self.onednn_cap.upper() in ONEDNN_BELOW_VNNI:
            return None
        return self.int8_dot

    def int8_slower_note(self, runtime: str = "onnxruntime") -> str | None:
        """Why INT8 may run no faster than FP32 here with ``runtime``, naming what is missing; None when this
        CPU has a fast INT8 dot product for it."""
        if self.arch in ("x86_64", "AMD64"):
            if self.int8_dot is None:
                return (f"this CPU ({self.model}) has no AVX-512 VNNI, AVX-VNNI or AMX: its INT8 kernels multiply "
                        f"in 16 bits and then widen, and often run no faster than FP32")
            if runtime == "openvino" and self.openvino_int8_dot is None:
                return (f"ONEDNN_MAX_CPU_ISA={self.onednn_cap} hides {self.int8_dot} from oneDNN: OpenVINO's INT8 "
                        f"convolutions run without it")
            return None
        if self.arch in ("aarch64", "arm64") and self.int8_dot is None:
            return (f"this CPU ({self.model}) has no NEON dot product (asimddp): INT8 kernels gain little over "
                    f"FP32 on it")
        return None

    def to_json(self) -> dict:
        out = {"model": self.model, "arch": self.arch, "kind": self.kind, "cores": self.cores, "isa": list(self.isa),
               "int8_dot_product": self.int8_dot}
        if self.onednn_cap:
            out["onednn_max_cpu_isa"] = self.onednn_cap
        return out

    def label(self) -> str:
        """One line for a report header: 'AMD EPYC (x86_64; AVX2, AVX-512, AVX-512 VNNI; 2 cores)'."""
        cap = f"; oneDNN capped to {self.onednn_cap}" if self.onednn_cap else ""
        isa = ", ".join(self.isa) or "no SIMD INT8 extensions"
        return f"{self.model} ({self.arch}; {isa}; {self.cores} cores{cap})"


def parse_cpuinfo(text: str, arch: str) -> tuple[str, tuple[str, ...]]:
    """(model name, INT8-relevant instruction sets) from the text of /proc/cpuinfo."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    table = ARM_INT8_FLAGS if arch in ("aarch64", "arm64") else X86_INT8_FLAGS
    return model, tuple(name for flag, name in table.items() if flag in flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    arch = platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model, isa = parse_cpuinfo(f.read(), arch)
    except OSError:
        model, isa = "", ()
    return CpuInfo(model=model or platform.processor() or "unknown CPU", arch=arch, isa=isa,
                   cores=os.cpu_count() or 1, onednn_cap=os.environ.get("ONEDNN_MAX_CPU_ISA") or None)


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


def cpu_line(cpu: dict | None) -> str:
    """One line from a report's ``cpu`` record (CpuInfo.to_json()), e.g. 'AMD EPYC, x86_64, 2 cores; AVX2,
    AVX-512, AVX-512 VNNI; INT8 dot product: AVX-512 VNNI'."""
    if not cpu:
        return "not recorded"
    isa = ", ".join(cpu.get("isa", [])) or "no SIMD INT8 extensions"
    cap = f"; oneDNN capped to {cpu['onednn_max_cpu_isa']}" if cpu.get("onednn_max_cpu_isa") else ""
    return (f"{cpu['model']}, {cpu['arch']}, {cpu['cores']} cores; {isa}; "
            f"INT8 dot product: {cpu.get('int8_dot_product') or 'none'}{cap}")
