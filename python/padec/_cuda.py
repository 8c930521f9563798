"""The CUDA side that needs no tensors (device queries), and the plan upload. torch is imported on
first use only."""

from __future__ import annotations

import ctypes
import dataclasses
import numbers
import sys
import threading
from typing import Any

from ._errors import Error, Status
from ._library import CDeviceInfo, check, lib
from ._params import Params, expect_params, int32_argument
from ._tensors import Tensor, describe


def import_torch():
    """torch, which the CUDA path needs and the CPU path does not."""
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError as error:
        raise ImportError("padec: the CUDA path works on torch tensors; install PyTorch") from error
    return torch


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """padec_cuda_device_info."""

    device: int
    sm_count: int
    cc_major: int
    cc_minor: int
    l2_bytes: int
    global_memory_bytes: int
    name: str
    memory_bytes_per_second: int  # peak; 0 where the device does not report its memory clock


def built_with_cuda() -> bool:
    """Whether the loaded library has the CUDA kernels (says nothing of a device being present)."""
    status = lib().padec_cuda_device_query(0, ctypes.byref(CDeviceInfo()))
    return status != Status.NOT_BUILT_WITH_CUDA


def current_device() -> int:
    """The calling thread's current CUDA device as torch sees it (torch.cuda.current_device(),
    which is the CUDA runtime's own), where torch is imported and sees a device; 0 otherwise,
    the runtime's default for a thread that never chose one. torch is not imported here."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.current_device())
    return 0


def cuda_device_index(device, name: str = "device") -> int:
    """The index of a CUDA device given as N, "cuda", "cuda:N", a torch device or None (the
    current device, current_device()). Error naming the argument for anything else."""
    if device is None:
        return current_device()
    if isinstance(device, numbers.Integral) and not isinstance(device, bool):
        index = int32_argument(device, name)
        if index < 0:
            raise Error(Status.BAD_ARGUMENT, f"{name} = {index}: need a device index >= 0")
        return index
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(device, (str, torch.device)):
        try:
            resolved = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise Error(Status.BAD_ARGUMENT, f"{name} = {device!r} is not a device") from None
        if resolved.type != "cuda":
            raise Error(Status.BAD_ARGUMENT, f"{name} = {device!r}: need a CUDA device")
        return current_device() if resolved.index is None else int(resolved.index)
    raise Error(Status.BAD_ARGUMENT,
                f"{name} = {device!r}: need an integer, a CUDA torch device or None (the current "
                "device)")


def device_info(device=None) -> DeviceInfo:
    """What padec sees of a CUDA device (padec_cuda_device_query). device: an index, a CUDA
    torch device or None, torch's current device (0 where torch is not imported). Raises Error
    (NO_DEVICE, NOT_BUILT_WITH_CUDA, ...)."""
    info = CDeviceInfo()
    check(lib().padec_cuda_device_query(cuda_device_index(device), ctypes.byref(info)))
    return DeviceInfo(info.device, info.sm_count, info.cc_major, info.cc_minor, info.l2_bytes,
                      info.global_memory_bytes, info.name.decode(errors="replace"),
                      info.memory_bytes_per_second)


def recommended_workers(params: Params, device=None) -> int:
    """The worker count (persistent CTAs) padec recommends for params on a CUDA device
    (padec_cuda_recommended_workers): the num_workers to plan with for run_cuda. device: as for
    device_info; None is torch's current device, the one run_cuda will run on by default."""
    expect_params(params)
    workers = ctypes.c_int32()
    check(lib().padec_cuda_recommended_workers(ctypes.byref(params.to_c()),
                                               cuda_device_index(device),
                                               ctypes.byref(workers)))
    return workers.value


def workers_or_recommended(params: Params, num_workers, device=None) -> int:
    """num_workers as given, else recommended_workers(params, device) (None: the current CUDA
    device). Where that device cannot be asked (no CUDA build, no device), Error BAD_ARGUMENT:
    num_workers is required."""
    if num_workers is not None:
        return num_workers
    try:
        return recommended_workers(params, device)
    except Error as error:
        if not Status.NOT_BUILT_WITH_CUDA <= error.status < Status.INTERNAL:
            raise
        raise Error(Status.BAD_ARGUMENT,
                    "num_workers: not given, and no CUDA device can recommend one "
                    f"({error.status_name}: {error.message}); pass num_workers") from error


def device_index(device) -> int:
    """The index of a CUDA device given as a torch device, "cuda:N", N, or None (current)."""
    import_torch()
    return cuda_device_index(device)


def empty_bytes(nbytes: int, device: int):
    """A new uint8 CUDA tensor of nbytes on device `device`. padec is asked about the device
    first, so that no device, a build without CUDA or an index past the devices is its Error,
    not torch's RuntimeError."""
    device_info(device)
    torch = import_torch()
    try:
        return torch.empty(nbytes, dtype=torch.uint8, device=torch.device("cuda", device))
    except RuntimeError as error:
        raise Error(Status.CUDA_ERROR,
                    f"device {device}: torch could not allocate {nbytes} bytes there "
                    f"({error})") from error


# Pinned sources of uploads that may not have run yet, each with the event that marks its end. The
# copy is not torch's own, so torch's pinned-memory cache cannot know to wait for it: the source is
# held here until its event has completed.
_uploads_lock = threading.Lock()
_uploads_in_flight: list = []


class DevicePlan:
    """A plan's own copy in device memory (Plan.to_device without out=), with the event that
    marks the end of its upload and the streams already ordered after it. The upload runs on the
    stream that was current then; a run on another stream must not read the buffer before it."""

    def __init__(self, buffer: Any, uploaded: Any, stream_handle: int):
        self.buffer = buffer
        self.uploaded = uploaded  # torch.cuda.Event recorded after the upload
        self.ordered = {stream_handle}  # streams whose later work follows the upload

    def ready_on(self, stream, capturing) -> Any:
        """The buffer, for work queued next on `stream`: a stream other than the upload's waits
        for the upload's event (once: its later work follows in stream order), and the buffer is
        recorded as used there, so that torch's allocator does not hand it out again while that
        stream may still read it. capturing(): whether the current stream is being captured; a
        captured stream cannot wait for an event recorded outside the capture, and the upload,
        which is refused during capture, was queued before it: torch.cuda.graph synchronises
        the device before it captures, and a caller capturing by other means must order the
        capture after the upload."""
        handle = stream.cuda_stream
        if handle not in self.ordered:
            self.buffer.record_stream(stream)
            if capturing():
                return self.buffer
            stream.wait_event(self.uploaded)
            self.ordered.add(handle)
        return self.buffer


def plan_buffer(name: str, buffer, plan_bytes: int) -> Tensor:
    """Checks a device buffer for a plan: a contiguous uint8 CUDA tensor, 16-byte aligned, of
    plan_bytes or more."""
    target = describe(name, buffer)
    target.expect_element("uint8")
    target.expect_contiguous()
    target.expect_aligned(16)
    if not target.device.startswith("cuda"):
        raise target.fail(Status.BAD_ARGUMENT, f"is on {target.device}, need a CUDA device")
    if target.numel < plan_bytes:
        raise target.fail(Status.WORKSPACE_TOO_SMALL,
                          f"{target.numel} bytes, the plan needs {plan_bytes}")
    return target


def upload_plan(plan, out) -> tuple[Any, int]:
    """Copies plan.data into the uint8 CUDA tensor `out` on torch's current stream, asynchronously
    (padec_cuda_upload_plan from a pinned copy). Returns the event recorded after the copy and
    the stream's handle."""
    torch = import_torch()
    plan_buffer("out", out, plan.layout.plan_bytes)
    with torch.cuda.device(out.device):
        if torch.cuda.is_current_stream_capturing():
            raise Error(Status.BAD_ARGUMENT,
                        "a plan cannot be uploaded during CUDA graph capture: call "
                        "plan.to_device() before capturing")
        stream = torch.cuda.current_stream()
        source = torch.empty(plan.layout.plan_bytes, dtype=torch.uint8, pin_memory=True)
        source.numpy()[:] = plan.data
        check(lib().padec_cuda_upload_plan(ctypes.byref(plan._c_layout), source.data_ptr(),
                                           out.data_ptr(), stream.cuda_stream))
        done = torch.cuda.Event()
        done.record(stream)
    with _uploads_lock:
        _uploads_in_flight[:] = [(s, e) for s, e in _uploads_in_flight if not e.query()]
        _uploads_in_flight.append((source, done))
    return done, stream.cuda_stream
