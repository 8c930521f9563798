"""Finding and loading libpadec.so, and the ctypes mirror of padec.h and padec_cuda.h."""

from __future__ import annotations

import ctypes
import functools
import os
import re
from pathlib import Path
from typing import Mapping, Optional

from ._errors import Error, Status

LIBRARY_FILENAME = "libpadec.so"
_PACKAGE_DIR = Path(__file__).resolve().parent

# The C library whose structs this module mirrors: major and minor must match (0.x changes the ABI).
_ABI_VERSION = (0, 5)

c_enum = ctypes.c_int


class CParams(ctypes.Structure):
    _fields_ = [
        ("num_q_heads", ctypes.c_int32),
        ("num_kv_heads", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("page_size", ctypes.c_int32),
        ("kv_layout", c_enum),
        ("q_dtype", c_enum),
        ("kv_dtype", c_enum),
        ("o_dtype", c_enum),
        ("q_len", ctypes.c_int32),
        ("window_left", ctypes.c_int32),
        ("softmax_scale", ctypes.c_float),
        ("fp8_scale_mode", c_enum),
        ("k_scale", ctypes.c_float),
        ("v_scale", ctypes.c_float),
    ]


class CCostModel(ctypes.Structure):
    _fields_ = [
        ("partition_ns", ctypes.c_double),
        ("item_ns", ctypes.c_double),
        ("split_ns", ctypes.c_double),
    ]


class CPlanOptions(ctypes.Structure):
    _fields_ = [
        ("num_workers", ctypes.c_int32),
        ("partition_tokens", ctypes.c_int32),
        ("policy", c_enum),
        ("cost_model", ctypes.POINTER(CCostModel)),  # NULL: the default model
    ]


class CPlanLayout(ctypes.Structure):
    _fields_ = [
        ("batch", ctypes.c_int32),
        ("num_workers", ctypes.c_int32),
        ("num_kv_heads", ctypes.c_int32),
        ("num_q_heads", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("q_len", ctypes.c_int32),
        ("partition_tokens", ctypes.c_int32),
        ("policy", ctypes.c_int32),
        ("params_key", ctypes.c_uint64),
        ("max_works", ctypes.c_int32),
        ("max_partial_slots", ctypes.c_int32),
        ("max_partial_rows", ctypes.c_int32),
        ("cost_partition", ctypes.c_int32),
        ("cost_item", ctypes.c_int32),
        ("cost_split", ctypes.c_int32),
        ("work_indptr_offset", ctypes.c_size_t),
        ("work_info_offset", ctypes.c_size_t),
        ("reduce_indptr_offset", ctypes.c_size_t),
        ("reduce_final_map_offset", ctypes.c_size_t),
        ("reduce_partial_map_offset", ctypes.c_size_t),
        ("partition_indptr_offset", ctypes.c_size_t),
        ("plan_bytes", ctypes.c_size_t),
        ("partial_o_offset", ctypes.c_size_t),
        ("partial_lse_offset", ctypes.c_size_t),
        ("merge_counters_offset", ctypes.c_size_t),
        ("workspace_bytes", ctypes.c_size_t),
    ]


class CPlanHeader(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_uint32),
        ("version", ctypes.c_uint32),
        ("params_key", ctypes.c_uint64),
        ("batch", ctypes.c_int32),
        ("num_workers", ctypes.c_int32),
        ("num_kv_heads", ctypes.c_int32),
        ("q_len", ctypes.c_int32),
        ("partition_tokens", ctypes.c_int32),
        ("policy", ctypes.c_int32),
        ("num_works", ctypes.c_int32),
        ("num_partial_slots", ctypes.c_int32),
        ("num_groups", ctypes.c_int32),
        ("num_partitions", ctypes.c_int32),
        ("reserved_", ctypes.c_int32 * 2),
    ]


class CTensors(ctypes.Structure):
    # Pointers are addresses: host memory for padec_cpu_run, device memory for padec_cuda_run.
    _fields_ = [
        ("q", ctypes.c_void_p),
        ("q_stride_token", ctypes.c_int64),
        ("q_stride_head", ctypes.c_int64),
        ("k_pages", ctypes.c_void_p),
        ("v_pages", ctypes.c_void_p),
        ("num_pages", ctypes.c_int64),
        ("page_indptr", ctypes.c_void_p),
        ("page_indices", ctypes.c_void_p),
        ("kv_lens", ctypes.c_void_p),
        ("k_scales", ctypes.c_void_p),
        ("v_scales", ctypes.c_void_p),
        ("o", ctypes.c_void_p),
        ("o_stride_token", ctypes.c_int64),
        ("o_stride_head", ctypes.c_int64),
        ("lse", ctypes.c_void_p),
        # Context-parallel shards (padec_tensors.shard_starts / seq_lens); both NULL for whole
        # sequences.
        ("shard_starts", ctypes.c_void_p),
        ("seq_lens", ctypes.c_void_p),
        # Self-resetting merge counters for GPU runs (padec_tensors.merge_counters); NULL: the
        # workspace's, cleared by one more launch each run.
        ("merge_counters", ctypes.c_void_p),
        # Entries of page_indices (padec_tensors.num_page_indices): checked against
        # page_indptr[batch] by the host and device block-table checks.
        ("num_page_indices", ctypes.c_int64),
        # Elements between pages of each pool; 0 = one page (padec_tensors.kv_page_stride).
        ("kv_page_stride", ctypes.c_int64),
    ]


class CGridLayout(ctypes.Structure):
    _fields_ = [
        ("batch", ctypes.c_int32),
        ("num_splits", ctypes.c_int32),
        ("num_kv_heads", ctypes.c_int32),
        ("num_q_heads", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("q_len", ctypes.c_int32),
        ("partition_tokens", ctypes.c_int32),
        ("reserved_", ctypes.c_int32),
        ("params_key", ctypes.c_uint64),
        ("partial_o_offset", ctypes.c_size_t),
        ("partial_lse_offset", ctypes.c_size_t),
        ("merge_counters_offset", ctypes.c_size_t),
        ("workspace_bytes", ctypes.c_size_t),
    ]


class CChoice(ctypes.Structure):
    _fields_ = [
        ("path", c_enum),  # padec_path: 0 persistent, 1 grid
        ("plan_options", CPlanOptions),
        ("grid_splits", ctypes.c_int32),
        ("partition_tokens", ctypes.c_int32),
    ]


class CShardMergeTensors(ctypes.Structure):
    # Addresses: host memory for padec_cpu_merge_shards, device memory for padec_cuda_merge_shards.
    _fields_ = [
        ("num_shards", ctypes.c_int32),
        ("rows", ctypes.c_int32),
        ("shard_o", ctypes.c_void_p),
        ("shard_lse", ctypes.c_void_p),
        ("o", ctypes.c_void_p),
        ("o_stride_token", ctypes.c_int64),
        ("o_stride_head", ctypes.c_int64),
        ("lse", ctypes.c_void_p),
    ]


class CDeviceInfo(ctypes.Structure):
    _fields_ = [
        ("device", ctypes.c_int32),
        ("sm_count", ctypes.c_int32),
        ("cc_major", ctypes.c_int32),
        ("cc_minor", ctypes.c_int32),
        ("l2_bytes", ctypes.c_int64),
        ("global_memory_bytes", ctypes.c_int64),
        ("name", ctypes.c_char * 256),
        ("memory_bytes_per_second", ctypes.c_int64),
    ]


class CDeviceShape(ctypes.Structure):
    _fields_ = [
        ("sm_count", ctypes.c_int32),
        ("memory_bytes_per_second", ctypes.c_int64),
    ]


assert ctypes.sizeof(CPlanHeader) == 64

_P = ctypes.POINTER
_PROTOTYPES = {
    "padec_version_number": (ctypes.c_uint, []),
    "padec_status_name": (ctypes.c_char_p, [c_enum]),
    "padec_status_str": (ctypes.c_char_p, [c_enum]),
    "padec_last_message": (ctypes.c_char_p, []),
    "padec_params_validate": (c_enum, [_P(CParams)]),
    "padec_plan_layout_init": (
        c_enum, [_P(CParams), ctypes.c_int32, _P(CPlanOptions), _P(CPlanLayout)]),
    "padec_plan_build": (
        c_enum, [_P(CParams), _P(CPlanLayout), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
    "padec_plan_build_shard": (
        c_enum, [_P(CParams), _P(CPlanLayout), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                 ctypes.c_void_p, ctypes.c_size_t]),
    "padec_cost_model_default": (c_enum, [_P(CCostModel)]),
    "padec_plan_predict": (
        c_enum, [_P(CParams), _P(CPlanLayout), ctypes.c_void_p, _P(CCostModel), ctypes.c_void_p]),
    "padec_cpu_run": (
        c_enum, [_P(CParams), _P(CPlanLayout), ctypes.c_void_p, _P(CTensors), ctypes.c_void_p,
                 ctypes.c_size_t]),
    "padec_grid_layout_init": (
        c_enum, [_P(CParams), ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, _P(CGridLayout)]),
    "padec_grid_recommended_splits": (
        ctypes.c_int32, [_P(CParams), ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]),
    "padec_choose": (
        c_enum, [_P(CParams), ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32, _P(CChoice)]),
    "padec_choose_on_device": (
        c_enum, [_P(CParams), ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32,
                 _P(CChoice)]),
    "padec_choose_for_device": (
        c_enum, [_P(CParams), ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32, _P(CDeviceShape),
                 _P(CChoice)]),
    "padec_cpu_run_grid": (
        c_enum, [_P(CParams), _P(CGridLayout), _P(CTensors), ctypes.c_void_p, ctypes.c_size_t]),
    "padec_cpu_merge_shards": (c_enum, [_P(CParams), _P(CShardMergeTensors)]),
    "padec_first_partition": (
        ctypes.c_int32, [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]),
    "padec_num_partitions": (
        ctypes.c_int32, [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]),
    "padec_validate_kv_host": (c_enum, [_P(CParams), ctypes.c_int32, _P(CTensors)]),
    "padec_cuda_validate_kv": (
        c_enum, [_P(CParams), ctypes.c_int32, _P(CTensors), ctypes.c_void_p, ctypes.c_void_p]),
    "padec_cuda_device_query": (c_enum, [ctypes.c_int32, _P(CDeviceInfo)]),
    "padec_cuda_recommended_workers": (c_enum, [_P(CParams), ctypes.c_int32, _P(ctypes.c_int32)]),
    "padec_cuda_run": (
        c_enum, [_P(CParams), _P(CPlanLayout), ctypes.c_void_p, _P(CTensors), ctypes.c_void_p,
                 ctypes.c_size_t, ctypes.c_void_p]),
    "padec_cuda_run_grid": (
        c_enum, [_P(CParams), _P(CGridLayout), _P(CTensors), ctypes.c_void_p, ctypes.c_size_t,
                 ctypes.c_void_p]),
    "padec_cuda_merge_shards": (c_enum, [_P(CParams), _P(CShardMergeTensors), ctypes.c_void_p]),
    "padec_cuda_plan_build": (
        c_enum, [_P(CParams), _P(CPlanLayout), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                 ctypes.c_void_p]),
    "padec_cuda_upload_plan": (
        c_enum, [_P(CPlanLayout), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
}


def candidate_paths() -> list[Path]:
    """Where libpadec.so is looked for, in order: $PADEC_LIBRARY (alone, when set), a copy in the
    package (padec/_lib/), then the build directory of the source tree (build/)."""
    override = os.environ.get("PADEC_LIBRARY")
    if override:
        return [Path(override)]
    return [_PACKAGE_DIR / "_lib" / LIBRARY_FILENAME,
            _PACKAGE_DIR.parent.parent / "build" / LIBRARY_FILENAME]


@functools.cache
def _load() -> tuple[ctypes.CDLL, Path]:
    paths = candidate_paths()
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in paths)
        raise OSError(f"padec: {LIBRARY_FILENAME} not found (tried {tried}); build it with `make` "
                      "in the padec source tree or set PADEC_LIBRARY to its path")
    handle = ctypes.CDLL(str(path))
    # The version first: another version's library may lack a symbol the prototypes name, and
    # its number says why better than the missing symbol would.
    handle.padec_version_number.restype, handle.padec_version_number.argtypes = \
        _PROTOTYPES["padec_version_number"]
    number = handle.padec_version_number()
    if (number // 10000, number // 100 % 100) != _ABI_VERSION:
        raise OSError(f"padec: {path} is version {number // 10000}.{number // 100 % 100}; this "
                      f"package needs {_ABI_VERSION[0]}.{_ABI_VERSION[1]}")
    for name, (restype, argtypes) in _PROTOTYPES.items():
        function = getattr(handle, name)
        function.restype = restype
        function.argtypes = argtypes
    return handle, path


def lib() -> ctypes.CDLL:
    """The loaded library, with its prototypes declared. Loaded on first use."""
    return _load()[0]


def library_path() -> Path:
    """The path of the loaded libpadec.so."""
    return _load()[1]


def library_version() -> str:
    """The version of the loaded library, "major.minor.patch"."""
    number = lib().padec_version_number()
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def status_name(status: int) -> str:
    """The C name of a status ("PADEC_STATUS_..."), from the library's own table."""
    return lib().padec_status_name(status).decode()


_TENSOR_FIELD = re.compile(r"\btensors\.([a-z_]+)")


def check(status: int, names: Optional[Mapping[str, str]] = None) -> None:
    """Raises Error for a failed C call, with the library's message for this thread.

    names: the caller's words for the C struct's fields (field -> argument), so that a message
    the library writes about "tensors.o" names the argument the Python caller passed."""
    if status == Status.OK:
        return
    # The library's message reads "PADEC_STATUS_NAME: detail"; Error puts the name back in front.
    message = lib().padec_last_message().decode(errors="replace")
    name, _, detail = message.partition(": ")
    if name != status_name(status) or not detail:
        detail = message or lib().padec_status_str(status).decode()
    if names:
        detail = _TENSOR_FIELD.sub(lambda field: names.get(field.group(1), field.group(0)), detail)
    raise Error(status, detail)
