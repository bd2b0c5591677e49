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

ENGINE_FILE = "model.engine"
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


def read_engine_tag(bundle_path: Path) -> dict:
    tag_path = Path(bundle_path) / ENGINE_TAG_FILE
    if not tag_path.is_file() or not (Path(bundle_path) / ENGINE_FILE).is_file():
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
        tag = read_engine_tag(bundle.path)
        check_engine_tag(tag, current_device_tag(trt), bundle.path)
        self.device = f"GPU{' + DLA' + str(tag['dla_core']) if tag.get('dla_core') is not None else ''}"
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine((bundle.path / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise BadInput(f"{bundle.path / ENGINE_FILE}: engine is corrupt or unreadable by this TensorRT; rebuild it "
                           f"with `edgevision build-engine`")
        self.context = self.engine.create_execution_context()
        self.stream = cuda_call(self.cudart.cudaStreamCreate())
        self.inputs, self.outputs = [], []
        self._device_ptrs = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(
                (name, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))))
        self._shapes: tuple | None = None
        self._host_out: list[np.ndarray] = []

    def _bind(self, batch_shape: tuple) -> None:
        """(Re)allocate device buffers for an input shape; static engines do this once."""
        for ptr in self._device_ptrs:
            self.cudart.cudaFree(ptr)
        self._device_ptrs, self._host_out = [], []
        name, dtype = self.inputs[0]
        self.context.set_input_shape(name, batch_shape)
        ptr = cuda_call(self.cudart.cudaMalloc(int(np.prod(batch_shape)) * dtype.itemsize))
        self.context.set_tensor_address(name, ptr)
        self._device_ptrs.append(ptr)
        for name, dtype in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype)
            ptr = cuda_call(self.cudart.cudaMalloc(host.nbytes))
            self.context.set_tensor_address(name, ptr)
            self._device_ptrs.append(ptr)
            self._host_out.append(host)
        self._shapes = batch_shape

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        cudart = self.cudart
        batch = np.ascontiguousarray(batch, dtype=self.inputs[0][1])
        if self._shapes != batch.shape:
            self._bind(batch.shape)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(cudart.cudaMemcpyAsync(self._device_ptrs[0], batch.ctypes.data, batch.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        for host, ptr in zip(self._host_out, self._device_ptrs[1:]):
            cuda_call(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream))
        cuda_call(cudart.cudaStreamSynchronize(self.stream))
        return [h.astype(np.float32, copy=True) for h in self._host_out]

    def close(self) -> None:
        for ptr in self._device_ptrs:
            self.cudart.cudaFree(ptr)
        self._device_ptrs = []
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
