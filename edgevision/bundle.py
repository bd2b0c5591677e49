"""Bundles: a directory holding one compiled artifact per graph plus ``edgevision.json``.

``edgevision.json`` format 2 lists the bundle's ``graphs``: each maps a name to its artifact file, its named
inputs and outputs (TensorSpec: dtype, shape, layout), its precision and its quantization record. A one-graph
model is a bundle whose single graph is named ``model`` with a uint8 NHWC ``image`` input. Format 1 bundles
(one artifact, one ``input``) still load: they are read as that one graph.

Bundles are written atomically: everything is built in a sibling temp directory that is renamed into place
only once complete, so a failed export leaves no half bundle and never touches an existing one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgevision.errors import BadInput
from edgevision.ops.preprocess import Preprocess

FORMAT_VERSION = 2
META_FILE = "edgevision.json"

# The names every model family shares (README: "Graphs and tensors").
MODEL_GRAPH = "model"  # the graph of a one-graph model
IMAGE = "image"  # a uint8 NHWC RGB image input


class TensorSpec(BaseModel):
    name: str
    shape: list[int]
    dtype: str
    layout: str | None = None
    # The tensor's name inside the artifact when it differs from ``name``: format 1 bundles' "images", and
    # LiteRT's signature names. Runners bind by it; everything else uses ``name``.
    artifact_name: str | None = None

    @property
    def bound_name(self) -> str:
        return self.artifact_name or self.name


Precision = Literal["fp32", "fp16", "int8"]
_PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}


class GraphSpec(BaseModel):
    """One graph of a bundle: its artifact file and its named inputs and outputs."""

    model_config = ConfigDict(extra="allow")

    artifact: str  # file name inside the bundle
    artifact_format: str  # onnx | openvino-ir | tflite | ...
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: Precision
    quantization: dict[str, Any] | None = None  # tool, preset, layers kept in float
    calibration: dict[str, Any] | None = None  # what the graph was calibrated on
    artifact_io: dict[str, Any] | None = None  # e.g. a tflite's int8 input scale/zero point and layout
    macs: int | None = None  # multiply-accumulates of one inference (conv/matmul), for bench's share of peak

    def input(self, name: str) -> TensorSpec:
        return _spec(self.inputs, name, "input")

    def output(self, name: str) -> TensorSpec:
        return _spec(self.outputs, name, "output")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def _spec(specs: list[TensorSpec], name: str, kind: str) -> TensorSpec:
    for t in specs:
        if t.name == name:
            return t
    raise KeyError(f"no {kind} named '{name}' (have: {', '.join(t.name for t in specs)})")


class BundleMeta(BaseModel):
    """The contract between export and every runtime. Field meanings are documented in README.md."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    edgevision_version: str
    created: str
    model: str  # registry variant
    family: str  # "module:Class" of the PyTorch model
    task: str
    imgsz: int
    graphs: dict[str, GraphSpec]
    preprocess: Preprocess
    head: dict[str, Any]
    labels: list[str]
    precision: Precision  # the lowest precision among the graphs (int8 when any graph is int8)
    target: str  # profile name
    target_family: str
    random_weights: bool = False
    random_seed: int | None = None
    weights_path: str | None = None
    weights_sha256: str | None = None
    calibration: dict[str, Any] | None = None  # source, image count, sha256
    toolchain: dict[str, str] = {}
    reference: dict[str, Any] | None = None  # FP32 PyTorch accuracy on the eval set at export time
    golden: dict[str, Any] | None = None  # golden.npz: inputs + FP32 outputs per graph, for checks without PyTorch
    # The recipe the bundle was exported with (thresholds, eval set, tolerances): a device with another edgevision
    # version judges and draws the bundle as the host did. Bundles without it fall back to the shipped recipe.
    recipe: dict[str, Any] | None = None
    # the side of the synthetic scenes its eval and default calibration sets render (then resized to imgsz), when
    # it is not imgsz: a model trained on smaller scenes than it runs at, or a student of one. None in older bundles
    scene_size: int | None = None

    def graph(self, name: str) -> GraphSpec:
        try:
            return self.graphs[name]
        except KeyError:
            raise BadInput(f"bundle of {self.model} has no graph '{name}' (it has: {', '.join(self.graphs)})") \
                from None

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates of all graphs together, once each; None when a graph's count is unknown."""
        counts = [g.macs for g in self.graphs.values()]
        return sum(counts) if counts and all(counts) else None


def lowest_precision(precisions) -> str:
    return max(precisions, key=_PRECISION_ORDER.__getitem__)


def upgrade_format_1(raw: dict) -> dict:
    """A format 1 ``edgevision.json`` (one artifact, one uint8 ``input``) as format 2: its one graph ``model``
    with the input named ``image`` (bound to the artifact's own input name)."""
    raw = dict(raw)
    try:
        image = dict(raw.pop("input"))
        outputs = [dict(o) for o in raw.pop("outputs")]
        io = raw.pop("artifact_io", None)
        image["artifact_name"] = image.get("name")
        if io and "input" in io:  # a .tflite: its own tensor names, outputs in the order they were recorded
            image["artifact_name"] = io["input"]["name"]
            for spec, tensor in zip(outputs, io.get("outputs", [])):
                spec["artifact_name"] = tensor["name"]
            io = {"inputs": [io["input"]], "outputs": io.get("outputs", [])}
        graph = {"artifact": raw.pop("artifact"), "artifact_format": raw.pop("artifact_format"),
                 "inputs": [{**image, "name": IMAGE}], "outputs": outputs, "precision": raw.get("precision"),
                 "quantization": raw.pop("quantization", None), "calibration": raw.get("calibration"),
                 "artifact_io": io, "macs": raw.pop("macs", None)}
    except (KeyError, TypeError) as e:
        raise BadInput(f"format 1 {META_FILE}: field '{e.args[0] if e.args else e}' missing or malformed; "
                       f"re-export the bundle") from None
    raw["graphs"] = {MODEL_GRAPH: graph}
    raw["format_version"] = FORMAT_VERSION
    return raw


class Bundle:
    def __init__(self, path: Path, meta: BundleMeta, archive: Path | None = None, format_read: int = FORMAT_VERSION) \
            -> None:
        self.path = path
        self.meta = meta
        self.archive = archive  # the .tar.gz it was extracted from; ``path`` is then a cache directory
        self.format_read = format_read  # the format_version on disk (1: upgraded to 2 when read)

    def output_dir(self, out_dir: Path | None = None) -> Path:
        """Where a verb writes what it makes for the user: ``out_dir`` if given, else the bundle directory, or
        beside the archive for a bundle read from a .tar.gz (the cache is no place a user looks)."""
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            return Path(out_dir)
        return self.archive.parent if self.archive is not None else self.path

    def output_name(self, name: str, out_dir: Path | None = None) -> Path:
        """``name`` (e.g. report.json) in ``output_dir``; beside an archive it is prefixed with the archive's
        bundle name (fast-yolo-demo-rpi-int8.report.json)."""
        if out_dir is None and self.archive is not None:
            return self.output_dir() / f"{archive_stem(self.archive)}.{name}"
        return self.output_dir(out_dir) / name

    def graph_path(self, graph: str) -> Path:
        """The artifact file of ``graph``."""
        return self.path / self.meta.graph(graph).artifact

    def __repr__(self) -> str:
        m = self.meta
        return f"Bundle({self.path}, {m.model}, {m.target}, {m.precision})"


def load_bundle(path: str | os.PathLike) -> Bundle:
    """A bundle directory, or a ``.tar.gz`` made by ``pack_bundle`` (extracted once into the cache)."""
    path = Path(path)
    archive = None
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        archive = path.resolve()
        path = unpack_bundle(path)
    meta_path = path / META_FILE
    if not path.exists():
        raise BadInput(f"{path}: no such bundle; create one with `edgevision export`")
    if not meta_path.is_file():
        raise BadInput(f"{path}: not a bundle (no {META_FILE}); pass the directory `edgevision export` wrote")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BadInput(f"{meta_path}: unreadable ({e}); re-export the bundle") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise BadInput(f"{meta_path}: missing format_version; re-export the bundle")
    if version > FORMAT_VERSION:
        raise BadInput(f"{path}: bundle format_version {version} is newer than this edgevision supports "
                       f"({FORMAT_VERSION}); upgrade edgevision")
    if version == 1:
        raw = upgrade_format_1(raw)
    try:
        meta = BundleMeta.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise BadInput(f"{meta_path}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}; re-export the bundle") \
            from None
    if not meta.graphs:
        raise BadInput(f"{meta_path}: lists no graphs; re-export the bundle")
    bundle = Bundle(path, meta, archive, format_read=version)
    for name, graph in meta.graphs.items():
        if not (path / graph.artifact).is_file():
            raise BadInput(f"{path}: artifact '{graph.artifact}' of graph '{name}' is missing; re-export the bundle")
    return bundle


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def archive_stem(archive: Path) -> str:
    """fast-yolo-demo-rpi-int8.tar.gz -> fast-yolo-demo-rpi-int8"""
    name = Path(archive).name
    return next((name[: -len(s)] for s in ARCHIVE_SUFFIXES if name.endswith(s)), Path(archive).stem)


def cache_dir() -> Path:
    root = os.environ.get("EDGEVISION_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) / "edgevision" if root else Path.home() / ".cache" / "edgevision"


def pack_bundle(bundle_dir: Path, out: Path | None = None, force: bool = False) -> Path:
    """One ``.tar.gz`` holding the bundle directory: what moves to the device."""
    import tarfile

    bundle = load_bundle(bundle_dir)
    out = Path(out) if out else bundle.path.with_name(bundle.path.name + ".tar.gz")
    if out.exists() and not force:
        raise BadInput(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(bundle.path.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                tar.add(f, arcname=f"{bundle.path.name}/{f.name}")
    return out


def unpack_bundle(archive: Path) -> Path:
    """Extract a packed bundle into the cache, keyed by the archive's hash; reused on later calls."""
    import tarfile

    digest = sha256_file(archive)[:16]
    target = cache_dir() / "bundles" / digest
    done = target / ".complete"
    if done.is_file():
        return next(p for p in target.iterdir() if p.is_dir())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{digest}."))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                parts = Path(m.name).parts
                unsafe = m.name.startswith(("/", "\\")) or ".." in parts or len(parts) > 2
                if unsafe or not (m.isfile() or m.isdir()):
                    raise BadInput(f"{archive}: unexpected entry '{m.name}'; not a bundle made by `edgevision pack`")
            tar.extractall(tmp, members=members)
        dirs = [p for p in tmp.iterdir() if p.is_dir()]
        if len(dirs) != 1 or not (dirs[0] / META_FILE).is_file():
            raise BadInput(f"{archive}: not a bundle archive (expected one directory with {META_FILE})")
        (tmp / ".complete").write_text(str(archive))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:  # EOFError: a copy cut short
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInput(f"{archive}: truncated or corrupt archive; copy it again ({type(e).__name__})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return next(p for p in target.iterdir() if p.is_dir())


def write_meta(directory: Path, meta: BundleMeta) -> None:
    atomic_write_text(directory / META_FILE, meta.model_dump_json(indent=2))


def update_meta(bundle: Bundle, **fields: Any) -> None:
    """Refresh fields of an existing bundle's metadata in place (atomically)."""
    bundle.meta = bundle.meta.model_copy(update=fields)
    write_meta(bundle.path, bundle.meta)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp file beside ``path`` to write; renamed over ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_output_dir(out: Path, force: bool) -> None:
    """Fail early, before any work, when the bundle could not be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a directory; choose another --out")
    if out.exists() and not force:
        raise BadInput(f"{out} already exists; pass --force to replace it, or choose another --out")
    probe = out.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"{out}: {probe} is a file, not a directory; choose another --out")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise BadInput(f"{out}: cannot write in {probe} ({e.strerror}); choose another --out") from None


@contextlib.contextmanager
def staging_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty temp dir next to ``out``; on success it replaces ``out`` (only if ``force``)."""
    check_output_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a bundle is shared like any output directory
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        if not force:  # appeared while we were exporting
            shutil.rmtree(tmp, ignore_errors=True)
            raise BadInput(f"{out} already exists; pass --force to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
