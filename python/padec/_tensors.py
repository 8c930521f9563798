"""numpy arrays and torch tensors seen the same way, and the checks made on them before any call
into C. torch is never imported here: a value can only be a torch tensor if the caller already
imported torch."""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

import numpy as np

from ._errors import Error, Status
from ._params import DType

# Element type names accepted for each padec dtype (numpy's or torch's spelling). bf16 has no numpy
# dtype: its bits are held as uint16 (or as ml_dtypes' bfloat16); fp8 likewise as uint8.
ACCEPTED_DTYPES = {
    DType.BF16: ("bfloat16", "uint16"),
    DType.FP16: ("float16",),
    DType.FP32: ("float32",),
    DType.E4M3: ("float8_e4m3fn", "uint8"),
}
NUMPY_DTYPES = {DType.BF16: np.uint16, DType.FP16: np.float16, DType.FP32: np.float32}


def torch_dtype(torch, dtype: DType):
    return {DType.BF16: torch.bfloat16, DType.FP16: torch.float16, DType.FP32: torch.float32}[dtype]


def aligned_empty(nbytes: int, alignment: int) -> np.ndarray:
    """A numpy uint8 buffer of nbytes whose start is aligned to `alignment` bytes."""
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    skip = -raw.__array_interface__["data"][0] % alignment
    return raw[skip:skip + nbytes]


# An empty torch tensor has no storage and gives data_ptr() 0, which the library reads as a
# missing argument (NULL_POINTER) where an empty numpy array passes. Nothing is ever read or
# written through an empty tensor, so it is given this address instead: host memory that stays
# valid, aligned for every check (16 bytes: the pools' and the workspace's).
_EMPTY_STORAGE = aligned_empty(256, 256)
EMPTY_ADDRESS = _EMPTY_STORAGE.__array_interface__["data"][0]


def is_torch_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


@dataclasses.dataclass
class Tensor:
    """What the checks need to know of one argument. Strides are in elements. Not frozen: a
    frozen dataclass sets each field through object.__setattr__, and a run describes a dozen
    arguments a call (the binding's per-call cost); nothing mutates one."""

    name: str
    value: Any  # the numpy array or torch tensor
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    itemsize: int
    address: int
    device: str  # "cpu" or "cuda:N"
    writeable: bool
    numel: int

    @property
    def is_torch(self) -> bool:
        return is_torch_tensor(self.value)

    def fail(self, status: Status, problem: str) -> Error:
        return Error(status, f"{self.name}: {problem}")

    def expect_dtype(self, dtype: DType, role: str) -> None:
        accepted = ACCEPTED_DTYPES[dtype]
        if self.dtype not in accepted:
            raise self.fail(Status.UNSUPPORTED_DTYPE,
                            f"dtype {self.dtype}, but {role} is {dtype.name}, which needs "
                            + " or ".join(accepted))

    def expect_element(self, dtype: str) -> None:
        if self.dtype != dtype:
            raise self.fail(Status.UNSUPPORTED_DTYPE, f"dtype {self.dtype}, need {dtype}")

    def expect_shape(self, shape: tuple[int, ...], meaning: str,
                     status: Status = Status.BAD_ARGUMENT) -> None:
        if self.shape != tuple(shape):
            raise self.fail(status,
                            f"shape {list(self.shape)}, need {list(shape)} {meaning}")

    def expect_contiguous(self) -> None:
        if self.numel == 0:
            return
        expected, step = [], 1
        for size in reversed(self.shape):
            expected.append(step)
            step *= size
        if any(size > 1 and stride != want
               for size, stride, want in zip(self.shape, self.strides, reversed(expected))):
            raise self.fail(Status.BAD_ARGUMENT,
                            f"strides {list(self.strides)} (elements) for shape "
                            f"{list(self.shape)}: it must be contiguous")

    def expect_pages(self) -> int:
        """A KV pool [num_pages, ...]: each page contiguous, pages any distance apart that keeps
        them from overlapping (padec_tensors.kv_page_stride), so that a view of one half of a
        [num_pages, 2, ...] cache is taken as it is. Returns the page stride in elements, 0 when
        the pool is contiguous."""
        page_elems = math.prod(self.shape[1:])
        if self.numel == 0 or self.shape[0] == 1 or self.strides[0] == page_elems:
            self.expect_contiguous()
            return 0
        page = dataclasses.replace(self, shape=self.shape[1:], strides=self.strides[1:],
                                   numel=page_elems)
        try:
            page.expect_contiguous()
        except Error as error:
            raise self.fail(Status.BAD_ARGUMENT,
                            f"strides {list(self.strides)} (elements) for shape "
                            f"{list(self.shape)}: each page must be contiguous") from error
        if self.strides[0] <= 0:
            raise self.fail(Status.BAD_ARGUMENT,
                            f"page stride {self.strides[0]} elements: pages must be in order "
                            "(a positive stride)")
        if self.strides[0] < page_elems:
            raise self.fail(Status.BAD_ARGUMENT,
                            f"page stride {self.strides[0]} elements, less than a page "
                            f"({page_elems}): pages must not overlap")
        return self.strides[0]

    def expect_rows(self, writeable: bool) -> None:
        """[tokens, heads, head_dim] with any non-negative token and head strides: contiguous
        rows, no broadcast (a zero stride means "packed" to the C API), and for an output no two
        elements at the same address."""
        if self.numel == 0:
            return
        sizes_strides = [(size, stride)
                         for size, stride in zip(self.shape, self.strides) if size > 1]
        if self.shape[-1] > 1 and self.strides[-1] != 1:
            raise self.fail(Status.BAD_ARGUMENT,
                            f"stride {self.strides[-1]} along head_dim: each head's row must be "
                            "contiguous")
        if any(stride <= 0 for _, stride in sizes_strides):
            raise self.fail(Status.BAD_ARGUMENT,
                            f"strides {list(self.strides)}: need positive strides (no broadcast, "
                            "no reversed axes)")
        if writeable:
            extent = 1
            for size, stride in sorted(sizes_strides, key=lambda item: item[1]):
                if stride < extent:
                    raise self.fail(Status.BAD_ARGUMENT,
                                    f"strides {list(self.strides)} for shape {list(self.shape)} "
                                    "make elements overlap")
                extent = stride * (size - 1) + extent

    def expect_aligned(self, alignment: int) -> None:
        if self.address % alignment:
            raise self.fail(Status.MISALIGNED_POINTER,
                            f"address {self.address:#x} is not {alignment}-byte aligned")

    def expect_writeable(self) -> None:
        if not self.writeable:
            raise self.fail(Status.BAD_ARGUMENT, "is read-only")

    def expect_device(self, device: str) -> None:
        if self.device != device:
            raise self.fail(Status.BAD_ARGUMENT, f"is on {self.device}, need {device}")

    def stride(self, axis: int, packed: int) -> int:
        """The stride of an axis for the C API, which reads 0 as packed."""
        return self.strides[axis] if self.shape[axis] > 1 else packed


# numpy's dtype.name is computed in Python on every access, and a run describes a dozen arrays;
# torch's names and device names are formatted strings: each is made once.
_NUMPY_NAMES: dict[np.dtype, str] = {}
_TORCH_NAMES: dict[Any, str] = {}
_TORCH_DEVICES: dict[Any, str] = {}


def describe(name: str, value) -> Tensor:
    """A Tensor for a numpy array or a torch tensor; Error for anything else."""
    if isinstance(value, np.ndarray):
        dtype = value.dtype
        dtype_name = _NUMPY_NAMES.get(dtype)
        if dtype_name is None:
            if not dtype.isnative:
                raise Error(Status.UNSUPPORTED_DTYPE,
                            f"{name}: byte order {dtype.byteorder!r}, need the native one")
            dtype_name = _NUMPY_NAMES.setdefault(dtype, dtype.name)
        itemsize = dtype.itemsize
        strides = value.strides
        if any(stride % itemsize for stride in strides):
            raise Error(Status.MISALIGNED_POINTER,
                        f"{name}: strides {list(strides)} bytes are not multiples of the "
                        f"{itemsize}-byte element")
        return Tensor(name, value, dtype_name, value.shape,
                      tuple(stride // itemsize for stride in strides), itemsize,
                      value.__array_interface__["data"][0], "cpu", value.flags.writeable,
                      value.size)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        # A sparse or nested tensor has no plain storage to hand to C (a nested one's layout
        # reads strided).
        if getattr(value, "is_nested", False):
            raise Error(Status.BAD_ARGUMENT, f"{name}: a nested tensor; need a strided (dense) one")
        if value.layout is not torch.strided:
            raise Error(Status.BAD_ARGUMENT,
                        f"{name}: a {value.layout} tensor; need a strided (dense) one")
        dtype_name = _TORCH_NAMES.get(value.dtype)
        if dtype_name is None:
            dtype_name = _TORCH_NAMES.setdefault(value.dtype,
                                                 str(value.dtype).removeprefix("torch."))
        device = value.device
        device_name = _TORCH_DEVICES.get(device)
        if device_name is None:
            device_name = _TORCH_DEVICES.setdefault(
                device, "cpu" if device.type == "cpu" else f"{device.type}:{device.index}")
        numel = value.numel()
        address = value.data_ptr() or (EMPTY_ADDRESS if numel == 0 else 0)
        return Tensor(name, value, dtype_name, tuple(value.shape), value.stride(),
                      value.element_size(), address, device_name, True, numel)
    raise Error(Status.BAD_ARGUMENT,
                f"{name}: need a numpy array or a torch tensor, not {type(value).__name__}")
