"""`edgevision build-engine`: the TensorRT engine of a jetson bundle, built on the Jetson itself.

Follows the TensorRT 10 Python API as shipped with JetPack 6: ONNX parser, builder config with precision
flags, a workspace limit and a timing cache kept in the bundle, DLA with GPU fallback when the profile has
DLA cores. One engine per graph (``<graph>.engine``), each written atomically into the bundle, with one tag
(TensorRT version, GPU name) for them all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgevision.bundle import (Bundle, archive_stem, atomic_write_bytes, atomic_write_json, load_bundle, now_iso,
                               pack_bundle)
from edgevision.config import get_target
from edgevision.errors import BadInput, EdgevisionError
from edgevision.runtime.tensorrt import (ENGINE_TAG_FILE, TIMING_CACHE_FILE, current_device_tag, engine_file,
                                         import_tensorrt)


def build_engine(bundle: Bundle | str | Path, *, workspace_mb: int = 1024, dla_core: int | None = None,
                 force: bool = False, max_batch: int = 8, out_dir: Path | None = None) -> dict:
    """Build one engine per graph (``model.engine`` for a one-graph bundle) of a jetson bundle on this device;
    returns the engine tag, with ``written``: where the bundle with its engines now is (see ``deliver``)."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    meta = bundle.meta
    if meta.target_family != "jetson":
        raise BadInput(f"{bundle.archive or bundle.path} is a {meta.target} bundle; build-engine takes jetson "
                       f"bundles (edgevision export MODEL --target jetson)")
    existing = [bundle.path / engine_file(g) for g in meta.graphs if (bundle.path / engine_file(g)).exists()]
    if existing and not force and bundle.archive is None and out_dir is None:
        raise BadInput(f"{existing[0]} already exists; pass --force to rebuild it")
    profile = get_target(meta.target)
    if dla_core is not None and not 0 <= dla_core < profile.dla_cores:
        raise BadInput(f"--dla-core {dla_core}: {profile.name} has {profile.dla_cores} DLA cores")
    trt = import_tensorrt()
    return deliver(bundle, lambda directory: _build(trt, Bundle(directory, meta), profile, workspace_mb, dla_core,
                                                    max_batch), out_dir=out_dir, force=force)


def deliver(bundle: Bundle, build: Callable[[Path], dict], *, out_dir: Path | None = None,
            force: bool = False) -> dict:
    """Run ``build`` on a bundle directory and put the result where the user sees it.

    * a bundle directory, no ``out_dir``: built in place;
    * a bundle read from an archive: built in a copy, packed into a new archive beside the old one
      (NAME.engine.tar.gz), written atomically; the original archive and the extraction cache stay as they were;
    * ``out_dir``: the archive (or, for a directory, a copy of the bundle with its engine) goes there.
    """
    if bundle.archive is None and out_dir is None:
        return {**build(bundle.path), "written": str(bundle.path)}
    dest_dir = Path(out_dir) if out_dir is not None else bundle.archive.parent
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = archive_stem(bundle.archive) if bundle.archive is not None else bundle.path.name
    dest = dest_dir / (f"{name}.engine.tar.gz" if bundle.archive is not None else name)
    if dest.exists() and not force:
        raise BadInput(f"{dest} already exists; pass --force to replace it")
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{name}."))
    try:
        work = staging / bundle.path.name  # the directory name inside the archive stays the same
        shutil.copytree(bundle.path, work)
        tag = build(work)
        if bundle.archive is not None:
            pack_bundle(work, dest, force=True)
        else:
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(work, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**tag, "written": str(dest)}


def _build(trt, bundle: Bundle, profile, workspace_mb: int, dla_core: int | None, max_batch: int) -> dict:
    meta = bundle.meta
    if dla_core is None and profile.dla_cores > 0 and meta.precision != "fp32":
        dla_core = 0
    cache_path = bundle.path / TIMING_CACHE_FILE
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    engines = {}
    for name, graph in meta.graphs.items():
        serialized, cache_bytes = _build_graph(trt, bundle.path / graph.artifact, graph.precision, workspace_mb,
                                               dla_core, max_batch, cache_bytes)
        atomic_write_bytes(bundle.path / engine_file(name), serialized)
        engines[name] = {"file": engine_file(name), "precision": graph.precision}
    atomic_write_bytes(cache_path, cache_bytes)
    tag = {**current_device_tag(trt), "precision": meta.precision, "engines": engines, "dla_core": dla_core,
           "workspace_mb": workspace_mb, "built": now_iso()}
    atomic_write_json(bundle.path / ENGINE_TAG_FILE, tag)
    return tag


def _build_graph(trt, onnx_path: Path, precision: str, workspace_mb: int, dla_core: int | None, max_batch: int,
                 cache_bytes: bytes) -> tuple[bytes, bytes]:
    """One graph's serialized engine, and the timing cache after building it (shared by the bundle's graphs)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgevisionError(f"TensorRT could not parse {onnx_path}: {errors[:400]}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # layers without Q/DQ run in fp16 rather than fp32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # the QDQ graph carries its own scales: no calibrator
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    dynamic = [network.get_input(i) for i in range(network.num_inputs) if network.get_input(i).shape[0] == -1]
    if dynamic:  # exported with --dynamic-batch
        opt = builder.create_optimization_profile()
        for inp in dynamic:
            rest = tuple(inp.shape[1:])
            opt.set_shape(inp.name, (1, *rest), (1, *rest), (max_batch, *rest))
        config.add_optimization_profile(opt)

    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgevisionError(f"TensorRT failed to build the engine of {onnx_path.name} (run with --debug and "
                              f"check the log above)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())
