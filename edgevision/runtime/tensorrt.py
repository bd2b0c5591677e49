"""TensorRT backend for jetson bundles, run on the device (TensorRT 10 from JetPack 6, cuda-python).

The engine is built on the device by `edgevision build-engine` (edgevision.export.tensorrt_engine) and
stored in the bundle with a tag naming the TensorRT version and GPU it was built for. Engines are not portable
between devices or TensorRT versions, so a mismatched tag is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgevision.errors import BadInput, MissingDependency
from edgevision.runtime.base import Runner

ENGINE_TAG_FILE = "engine.json"
TIMING_CACHE_FILE = "timing.cache"


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependency(
            "tensorrt", "jetson",
            "TensorRT engines (on a Jetson, TensorRT comes with JetPack 6: python3-libnvinfer; on a host, check "
            "the bundle's ONNX with --runtime onnxruntime)") from None
    return trt


def import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise MissingDependency("cuda-python", "jetson", "TensorRT inference") from None
    return cudart


def cuda_call(result):
    """cuda-python returns (error, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


def current_device_tag(trt=None) -> dict:
    """What an engine built here would be tagged with: TensorRT version and GPU name."""
    trt = trt or import_tensorrt()
    cudart = import_cudart()
    props = cuda_call(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"tensorrt": trt.__version__, "gpu": name.strip("\x00 ")}


def check_engine_tag(stored: dict, current: dict, bundle: Path) -> None:
    """Refuse an engine built with another TensorRT version or on another GPU."""
    for key in ("tensorrt", "gpu"):
        if stored.get(key) != current.get(key):
            raise BadInput(
                f"{bundle}: the engine was built for {key} '{stored.get(key)}', this device has "
                f"'{current.get(key)}'; engines are not portable, rebuild it here with "
                f"`edgevision build-engine {bundle} --force`")


def engine_file(graph: str) -> str:
    """The engine of a graph: model.engine for a one-graph bundle, image_encoder.engine, ..."""
    return f"{graph}.engine"


def read_engine_tag(bundle_path: Path, graphs=("model",)) -> dict:
    tag_path = Path(bundle_path) / ENGINE_TAG_FILE
    if not tag_path.is_file() or not all((Path(bundle_path) / engine_file(g)).is_file() for g in graphs):
        raise BadInput(f"{bundle_path}: no TensorRT engine yet; build it on the Jetson with "
                       f"`edgevision build-engine {bundle_path}`")
    return json.loads(tag_path.read_text(encoding="utf-8"))


class TensorRTRunner(Runner):
    runtime = "tensorrt"
    device = "GPU"

    def __init__(self, bundle, threads=None) -> None:
        super().__init__(bundle, threads)
        trt = import_tensorrt()
        self.cudart = import_cudart()
        tag = read_engine_tag(bundle.path, tuple(self.graphs))
        check_engine_tag(tag, current_device_tag(trt), bundle.path)
        self.device = f"GPU{' + DLA' + str(tag['dla_core']) if tag.get('dla_core') is not None else ''}"
        self.stream = cuda_call(self.cudart.cudaStreamCreate())
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self._engines: dict[str, _Engine] = {}
        for name, spec in self.graphs.items():
            engine = runtime.deserialize_cuda_engine((bundle.path / engine_file(name)).read_bytes())
            if engine is None:
                raise BadInput(f"{bundle.path / engine_file(name)}: engine is corrupt or unreadable by this "
                               f"TensorRT; rebuild it with `edgevision build-engine`")
            self._engines[name] = _Engine(trt, self.cudart, engine, spec, self.stream)

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._engines[graph].run(feeds)

    def close(self) -> None:
        for engine in getattr(self, "_engines", {}).values():
            engine.free()
        self._engines = {}
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None


class _Engine:
    """One graph's engine and execution context; device buffers bound by tensor name."""

    def __init__(self, trt, cudart, engine, spec, stream) -> None:
        self.cudart, self.engine, self.stream = cudart, engine, stream
        self.context = engine.create_execution_context()
        self.inputs = {t.name: t.bound_name for t in spec.inputs}
        self.outputs = {t.name: t.bound_name for t in spec.outputs}
        self.dtypes = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            self.dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        self._shapes: dict[str, tuple] | None = None
        self._device: dict[str, int] = {}
        self._host_out: dict[str, np.ndarray] = {}

    def _bind(self, shapes: dict[str, tuple]) -> None:
        """(Re)allocate device buffers for the input shapes; static engines do this once."""
        self.free()
        for name, shape in shapes.items():
            self.context.set_input_shape(name, shape)
            self._device[name] = cuda_call(self.cudart.cudaMalloc(int(np.prod(shape)) * self.dtypes[name].itemsize))
            self.context.set_tensor_address(name, self._device[name])
        for name in self.outputs.values():
            host = np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self._device[name] = cuda_call(self.cudart.cudaMalloc(host.nbytes))
            self.context.set_tensor_address(name, self._device[name])
            self._host_out[name] = host
        self._shapes = shapes

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        arrays = {self.inputs[k]: np.ascontiguousarray(v, dtype=self.dtypes[self.inputs[k]]) for k, v in feeds.items()}
        shapes = {k: v.shape for k, v in arrays.items()}
        if self._shapes != shapes:
            self._bind(shapes)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, a in arrays.items():
            cuda_call(cudart.cudaMemcpyAsync(self._device[name], a.ctypes.data, a.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        for name, host in self._host_out.items():
            cuda_call(cudart.cudaMemcpyAsync(host.ctypes.data, self._device[name], host.nbytes, d2h, self.stream))
        cuda_call(cudart.cudaStreamSynchronize(self.stream))
        return {k: self._host_out[bound].astype(np.float32, copy=True) for k, bound in self.outputs.items()}

    def free(self) -> None:
        for ptr in self._device.values():
            self.cudart.cudaFree(ptr)
        self._device, self._host_out = {}, {}
