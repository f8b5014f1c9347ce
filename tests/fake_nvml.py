"""A stand-in for the `pynvml` module: same names, same error classes, scripted answers."""

from types import SimpleNamespace


class NVMLError(Exception):
    pass


def _kind(name):
    return type(name, (NVMLError,), {})


class FakeNvml:
    NVMLError = NVMLError
    NVMLError_LibraryNotFound = _kind("NVMLError_LibraryNotFound")
    NVMLError_DriverNotLoaded = _kind("NVMLError_DriverNotLoaded")
    NVMLError_NotSupported = _kind("NVMLError_NotSupported")
    NVMLError_FunctionNotFound = _kind("NVMLError_FunctionNotFound")
    NVMLError_GpuIsLost = _kind("NVMLError_GpuIsLost")
    NVMLError_NoPermission = _kind("NVMLError_NoPermission")
    NVMLError_LibRmVersionMismatch = _kind("NVMLError_LibRmVersionMismatch")

    def __init__(
        self,
        devices=(("NVIDIA H100 80GB HBM3", 80 << 30),),
        init_error=None,
        without_v3=False,
        not_supported=(),
    ):
        self.devices = [
            dict(name=name, total=total, used=0, util=50, processes={}) for name, total in devices
        ]
        self.init_error = init_error
        self.without_v3 = without_v3
        self.not_supported = set(not_supported)
        self.lost = set()
        self.shut_down = False

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error()

    def nvmlShutdown(self):
        self.shut_down = True

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def _device(self, handle, call):
        if handle in self.lost:
            raise self.NVMLError_GpuIsLost()
        if call in self.not_supported:
            raise self.NVMLError_NotSupported()
        return self.devices[handle]

    def nvmlDeviceGetName(self, handle):
        return self._device(handle, "name")["name"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        device = self._device(handle, "memory")
        used = sum(v for v in device["processes"].values() if v is not None and v < 1 << 63)
        return SimpleNamespace(total=device["total"], used=used, free=device["total"] - used)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=self._device(handle, "utilization")["util"], memory=10)

    def _running(self, handle, call):
        device = self._device(handle, call)
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used)
            for pid, used in device["processes"].items()
        ]

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle):
        if self.without_v3:
            raise self.NVMLError_FunctionNotFound()
        return self._running(handle, "processes_v3")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle):
        return self._running(handle, "processes_v2")

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self._running(handle, "processes")
