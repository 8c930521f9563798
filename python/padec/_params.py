"""The enums and parameters of padec.h: padec_dtype, padec_layout, padec_fp8_scale_mode,
padec_policy and padec_params."""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import math
import numbers

from ._errors import Error, Status
from ._library import CParams, check, lib


class DType(enum.IntEnum):
    """padec_dtype. bf16 has no numpy dtype: numpy arrays of bf16 hold its bits as uint16."""

    BF16 = 0
    FP16 = 1
    FP32 = 2  # output only
    E4M3 = 3  # KV cache only: fp8 e4m3 (OCP "fn"), numpy uint8 or torch float8_e4m3fn / uint8


class Layout(enum.IntEnum):
    """padec_layout of the K and V page pools."""

    NHD = 0  # [num_pages, page_size, num_kv_heads, head_dim]
    HND = 1  # [num_pages, num_kv_heads, page_size, head_dim]


class Fp8ScaleMode(enum.IntEnum):
    """padec_fp8_scale_mode: how an e4m3 cache is dequantised."""

    NONE = 0               # the fp8 values as they are
    PER_TENSOR = 1         # Params.k_scale and Params.v_scale
    PER_TENSOR_DEVICE = 2  # one float32 each in k_scales / v_scales, read at run time
    PER_TOKEN = 3          # float32 [num_pages, num_kv_heads, page_size] each


class Policy(enum.IntEnum):
    """padec_policy of the scheduler."""

    EVEN = 0  # equal partitions per worker (the seed's algorithm)
    COST = 1  # equal predicted time per worker (padec_cost_model: items and splits cost too)
    BATCH_INVARIANT = 2  # split points fixed by each sequence alone: output independent of the batch


_DTYPE_ALIASES = {
    "bf16": DType.BF16, "bfloat16": DType.BF16,
    "fp16": DType.FP16, "float16": DType.FP16, "half": DType.FP16,
    "fp32": DType.FP32, "float32": DType.FP32, "float": DType.FP32,
    "e4m3": DType.E4M3, "fp8": DType.E4M3, "float8_e4m3fn": DType.E4M3,
}


def coerce_enum(cls: type[enum.IntEnum], value, field: str, status: Status) -> enum.IntEnum:
    """An enum member from a member, its value or its name (any case); dtypes also from numpy
    and torch dtypes and common spellings ("bfloat16", "fp8")."""
    if isinstance(value, cls):
        return value
    try:
        if isinstance(value, bool):
            raise ValueError(value)  # True is not a member's value, whatever int(True) is
        if isinstance(value, numbers.Integral):
            return cls(int(value))
        key = str(getattr(value, "__name__", value)).removeprefix("torch.")
        if cls is DType and key.lower() in _DTYPE_ALIASES:
            return _DTYPE_ALIASES[key.lower()]
        return cls[key.upper()]
    except (KeyError, ValueError):
        choices = ", ".join(member.name for member in cls)
        raise Error(status, f"{field} = {value!r} is not a {cls.__name__} ({choices})") from None


INT32_MAX = 2**31 - 1


def int32_argument(value, name: str) -> int:
    """value as an int if it is an integer (Python or numpy) that fits int32; Error naming the
    argument otherwise (a float, None or a bool is not silently truncated or converted)."""
    return _integer_argument(value, name, 32)


def int64_argument(value, name: str) -> int:
    """int32_argument for int64."""
    return _integer_argument(value, name, 64)


def _integer_argument(value, name: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise Error(Status.BAD_ARGUMENT, f"{name} = {value!r}: need an integer")
    number = int(value)
    if not -(1 << (bits - 1)) <= number < 1 << (bits - 1):
        raise Error(Status.BAD_ARGUMENT, f"{name} = {number} does not fit int{bits}")
    return number


def partition_tokens_argument(value, name: str = "partition_tokens") -> int:
    """value as padec's partition size argument: 0 (the default, 256) or a power of two
    16..16384, as the C API takes it; Error naming the argument otherwise."""
    tokens = int32_argument(value, name)
    if tokens and (not 16 <= tokens <= 16384 or tokens & (tokens - 1)):
        raise Error(Status.BAD_ARGUMENT,
                    f"{name} = {tokens}: need a power of two 16..16384 (0 = 256)")
    return tokens


def float_argument(value, name: str, *, single: bool = False) -> float:
    """value as a float if it is a real number; Error naming the argument otherwise. single:
    the C field is a float (32 bits), so a finite value that would round to 0 or to infinity
    there is refused here with the value the caller gave (the library would see 0 or inf)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Error(Status.BAD_ARGUMENT, f"{name} = {value!r}: need a real number")
    try:
        number = float(value)
    except OverflowError:
        raise Error(Status.BAD_ARGUMENT, f"{name} = {value!r} does not fit a float") from None
    if single and math.isfinite(number):
        narrowed = ctypes.c_float(number).value
        if math.isinf(narrowed) or (narrowed == 0.0 and number != 0.0):
            raise Error(Status.BAD_ARGUMENT,
                        f"{name} = {value!r} is outside a 32-bit float's range (it would be "
                        f"{narrowed!r})")
    return number


@dataclasses.dataclass(frozen=True)
class Params:
    """padec_params: one attention layer. Enum fields accept members, values or names.

    q_len is the number of new query tokens per sequence (1..4); window_left 0 means no window,
    W > 0 lets query i of a sequence of length L see positions [L - q_len + i - W, L - q_len + i];
    softmax_scale 0 means 1 / sqrt(head_dim). k_scale and v_scale are used with
    Fp8ScaleMode.PER_TENSOR only, which needs both: 0, the default, means not given (as a zeroed
    padec_params does) and is refused there with BAD_SCALES rather than read as 1.
    """

    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    page_size: int
    kv_layout: Layout = Layout.NHD
    q_dtype: DType = DType.BF16
    kv_dtype: DType = DType.BF16
    o_dtype: DType = DType.BF16
    q_len: int = 1
    window_left: int = 0
    softmax_scale: float = 0.0
    fp8_scale_mode: Fp8ScaleMode = Fp8ScaleMode.NONE
    k_scale: float = 0.0
    v_scale: float = 0.0

    def __post_init__(self):
        fields = [("kv_layout", Layout, Status.BAD_ARGUMENT),
                  ("q_dtype", DType, Status.UNSUPPORTED_DTYPE),
                  ("kv_dtype", DType, Status.UNSUPPORTED_DTYPE),
                  ("o_dtype", DType, Status.UNSUPPORTED_DTYPE),
                  ("fp8_scale_mode", Fp8ScaleMode, Status.BAD_SCALES)]
        for name, cls, status in fields:
            object.__setattr__(self, name, coerce_enum(cls, getattr(self, name), name, status))
        for name in ("num_q_heads", "num_kv_heads", "head_dim", "page_size", "q_len", "window_left"):
            object.__setattr__(self, name, int32_argument(getattr(self, name), name))
        for name in ("softmax_scale", "k_scale", "v_scale"):
            object.__setattr__(self, name, float_argument(getattr(self, name), name, single=True))

    @property
    def group(self) -> int:
        """Query heads per KV head. Raises Error for params padec_params_validate refuses."""
        self.checked_c()
        return self.num_q_heads // self.num_kv_heads

    def to_c(self) -> CParams:
        return CParams(
            num_q_heads=self.num_q_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
            page_size=self.page_size, kv_layout=self.kv_layout, q_dtype=self.q_dtype,
            kv_dtype=self.kv_dtype, o_dtype=self.o_dtype, q_len=self.q_len,
            window_left=self.window_left, softmax_scale=self.softmax_scale,
            fp8_scale_mode=self.fp8_scale_mode, k_scale=self.k_scale, v_scale=self.v_scale)

    def validate(self) -> None:
        """Checks the parameters on their own (padec_params_validate); raises Error."""
        self.checked_c()

    def checked_c(self) -> CParams:
        """The C struct of these params, once padec_params_validate has accepted them (raises
        Error otherwise). Params are frozen, so the struct is made and checked on first use only
        and shared by later calls: the C functions take it as const."""
        checked = self.__dict__.get("_checked_c")
        if checked is None:
            checked = self.to_c()
            check(lib().padec_params_validate(ctypes.byref(checked)))
            object.__setattr__(self, "_checked_c", checked)
        return checked


def expect_params(params) -> Params:
    """params itself if it is a Params; Error otherwise."""
    if not isinstance(params, Params):
        raise Error(Status.BAD_ARGUMENT,
                    f"params: need a padec.Params, not {type(params).__name__}")
    return params
