"""GPU memory through NVML (NVIDIA's `nvidia-ml-py`, module `pynvml`), per device and per process.

`GpuSampler` wraps the NVML library it is given (the real `pynvml` by default, a fake in tests)
and never raises: each NVML failure becomes a reason. No library or no driver: the sampler is
`unavailable` with a reason, and the run shows host memory instead. A call a device does not
support gives None for that figure. A GPU that falls off the bus is reported as lost, the other
devices go on being sampled.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any

try:
    import pynvml
except ImportError:  # a declared dependency; a broken install gets a reason, not a crash
    pynvml = None

_NOT_AVAILABLE = (1 << 64) - 1  # NVML's "N/A" for per-process memory (WDDM, MIG)


@dataclass
class DeviceSample:
    index: int
    name: str
    memory_total: int | None
    memory_used: int | None
    utilization: int | None  # percent
    lost: bool = False


@dataclass
class ProcessSample:
    pid: int
    device: int
    used_bytes: int | None


class GpuSampler:
    def __init__(self, nvml: Any = None) -> None:
        """`nvml`: the `pynvml` module (the default) or a stand-in with the same names."""
        self.unavailable: str | None = None
        self._nvml: Any = nvml if nvml is not None else pynvml
        self._handles: list[Any] = []
        self._lost: set[int] = set()
        if self._nvml is None:
            self.unavailable = "nvidia-ml-py is not installed"
            return
        try:
            self._nvml.nvmlInit()
            self._handles = [
                self._nvml.nvmlDeviceGetHandleByIndex(i)
                for i in range(self._nvml.nvmlDeviceGetCount())
            ]
        except Exception as err:  # NVMLError and its kinds, or a library mismatch
            self.unavailable = describe_nvml_error(self._nvml, err)
        if not self.unavailable and not self._handles:
            self.unavailable = "NVML sees no GPU"

    @property
    def device_count(self) -> int:
        return len(self._handles)

    def sample(self) -> tuple[list[DeviceSample], list[ProcessSample]]:
        if self.unavailable:
            return [], []
        devices, processes = [], []
        for index, handle in enumerate(self._handles):
            if index in self._lost:
                devices.append(DeviceSample(index, "lost", None, None, None, lost=True))
                continue
            try:
                devices.append(self._device(index, handle))
                processes.extend(self._processes(index, handle))
            except self._nvml.NVMLError_GpuIsLost:
                self._lost.add(index)
                devices.append(DeviceSample(index, "lost", None, None, None, lost=True))
        return devices, processes

    def close(self) -> None:
        if not self.unavailable:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _device(self, index: int, handle) -> DeviceSample:
        name = self._optional(self._nvml.nvmlDeviceGetName, handle) or f"GPU {index}"
        memory = self._optional(self._nvml.nvmlDeviceGetMemoryInfo, handle)
        rates = self._optional(self._nvml.nvmlDeviceGetUtilizationRates, handle)
        return DeviceSample(
            index,
            name.decode() if isinstance(name, bytes) else str(name),
            int(memory.total) if memory else None,
            int(memory.used) if memory else None,
            int(rates.gpu) if rates else None,
        )

    def _processes(self, index: int, handle) -> list[ProcessSample]:
        running = None
        for name in (
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetComputeRunningProcesses_v2",
            "nvmlDeviceGetComputeRunningProcesses",
        ):
            call = getattr(self._nvml, name, None)
            if call is None:
                continue
            try:
                running = call(handle)
                break
            except (self._nvml.NVMLError_FunctionNotFound, self._nvml.NVMLError_NotSupported):
                continue
            except self._nvml.NVMLError_GpuIsLost:
                raise
            except Exception as err:
                if _is_library_mismatch(self._nvml, err):  # older driver, newer struct
                    continue
                raise
        samples = []
        for process in running or []:
            used = getattr(process, "usedGpuMemory", None)
            samples.append(
                ProcessSample(
                    int(process.pid), index, None if used in (None, _NOT_AVAILABLE) else int(used)
                )
            )
        return samples

    def _optional(self, call, handle):
        """A figure this device may not support: None then."""
        try:
            return call(handle)
        except self._nvml.NVMLError_GpuIsLost:
            raise
        except self._nvml.NVMLError_NotSupported:
            return None


def describe_nvml_error(nvml: Any, err: Exception) -> str:
    """Why NVML is unusable, in a user's words."""
    kinds = (
        ("NVMLError_LibraryNotFound", "NVML library not found (no NVIDIA driver)"),
        ("NVMLError_DriverNotLoaded", "NVIDIA driver not loaded"),
        ("NVMLError_NoPermission", "no permission to use NVML"),
        ("NVMLError_LibRmVersionMismatch", "NVIDIA driver and library versions differ"),
        ("NVMLError_GpuIsLost", "GPU lost"),
    )
    for name, text in kinds:
        kind = getattr(nvml, name, None)
        if kind is not None and isinstance(err, kind):
            return text
    if _is_library_mismatch(nvml, err):
        return "nvidia-ml-py does not match the driver"
    return f"NVML failed: {err}"


def _is_library_mismatch(nvml: Any, err: Exception) -> bool:
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    return mismatch is not None and isinstance(err, mismatch)


def to_event_fields(devices: list[DeviceSample]) -> list[dict[str, Any]]:
    return [asdict(device) for device in devices]
