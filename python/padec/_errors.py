"""Status codes (padec.h's PADEC_STATUS_TABLE) and the exception that carries them."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """padec_status; the member name is the C name without its PADEC_STATUS_ prefix."""

    OK = 0
    NULL_POINTER = 100
    MISALIGNED_POINTER = 101
    BAD_HEAD_COUNT = 102
    UNSUPPORTED_HEAD_DIM = 103
    UNSUPPORTED_DTYPE = 104
    BAD_PAGE_SIZE = 105
    BAD_Q_LEN = 106
    BAD_ARGUMENT = 107
    KV_LEN_EXCEEDS_PAGES = 108
    PAGE_INDEX_OUT_OF_RANGE = 109
    BAD_SCALES = 110
    WORKSPACE_TOO_SMALL = 200
    PLAN_MISMATCH = 201
    SIZE_OVERFLOW = 202
    NOT_BUILT_WITH_CUDA = 300
    CUDA_ERROR = 301
    NO_DEVICE = 302
    UNSUPPORTED_DEVICE = 303
    INTERNAL = 900

    @property
    def c_name(self) -> str:
        return f"PADEC_STATUS_{self.name}"


class Error(Exception):
    """A padec call failed, in C or in the binding's checks before it.

    Attributes: status (Status, or the int the library returned if it is not in the table),
    status_name ("PADEC_STATUS_..."), message (which argument, which values).
    """

    def __init__(self, status: int, message: str):
        try:
            self.status: Status | int = Status(status)
            self.status_name = self.status.c_name
        except ValueError:
            self.status = status
            self.status_name = f"PADEC_STATUS_UNKNOWN ({status})"
        self.message = message
        super().__init__(f"{self.status_name}: {message}")

    def __reduce__(self):
        return type(self), (int(self.status), self.message)
