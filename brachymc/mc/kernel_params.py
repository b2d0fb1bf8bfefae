"""The kernel's parameter block: ``BmcParams`` of ``kernels/params.h``, filled from Python.

The field list is read from the header itself (every field is 8 bytes: ``long long``, ``double``
or a pointer), so the C struct stays the one description of the kernel's inputs. A
:class:`ParamBlock` holds the bytes of one block and the arrays its pointers refer to (so they
live as long as the block); :meth:`ParamBlock.device_copy` puts it on the GPU for the GPU build.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from brachymc.errors import KernelBuildError
from brachymc.mc.kernel_build import kernel_source

_FIELD = re.compile(r"^\s*(const\s+)?(long long|double|int|double\s*\*|int\s*\*|long long\s*\*)\s*(\w+);", re.M)
_DEFINE = re.compile(r"^#define\s+(BMC_\w+)\s+(\d+)\b", re.M)


@lru_cache(maxsize=None)
def param_fields() -> tuple[tuple[str, str], ...]:
    """(name, kind) of every BmcParams field in order; kind is 'i64', 'f64' or a pointer dtype."""
    text = kernel_source()                  # the very text both builds compile
    body = text[text.index("struct BmcParams {"):text.index("};", text.index("struct BmcParams {"))]
    out = []
    for m in _FIELD.finditer(body):
        ctype, name = m.group(2).replace(" ", ""), m.group(3)
        kind = {"longlong": "i64", "double": "f64", "double*": "ptr:f8", "int*": "ptr:i4",
                "longlong*": "ptr:i8"}.get(ctype)
        if kind is None:
            raise KernelBuildError(f"params.h: field {name} has type {ctype!r}; only 8-byte fields are allowed")
        out.append((name, kind))
    return tuple(out)


@lru_cache(maxsize=None)
def defines() -> dict[str, int]:
    """The integer #defines of params.h (accumulator slots)."""
    return {k: int(v) for k, v in _DEFINE.findall(kernel_source())}


class ParamBlock:
    """The bytes of one BmcParams and the arrays it points to.

    ``xp`` is the namespace of the arrays (numpy for the CPU build, cupy for the GPU build):
    pointer fields take arrays of that namespace, converted to the field's dtype (C order).
    """

    def __init__(self, xp):
        self.xp = xp
        self._fields = param_fields()
        self._index = {n: i for i, (n, _) in enumerate(self._fields)}
        self.words = np.zeros(len(self._fields), dtype=np.int64)
        self.arrays: dict[str, object] = {}

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    def set(self, **values) -> None:
        for name, v in values.items():
            if name not in self._index:
                raise KeyError(f"BmcParams has no field {name!r}")
            i = self._index[name]
            kind = self._fields[i][1]
            if kind == "i64":
                self.words[i] = int(v)
            elif kind == "f64":
                self.words[i:i + 1].view(np.float64)[0] = float(v)
            else:
                self.words[i] = self._pointer(name, kind, v)

    def _pointer(self, name: str, kind: str, v) -> int:
        if v is None:
            self.arrays.pop(name, None)
            return 0
        dtype = {"ptr:f8": np.float64, "ptr:i4": np.int32, "ptr:i8": np.int64}[kind]
        xp = self.xp
        if not (isinstance(v, xp.ndarray) and v.dtype == dtype and v.flags.c_contiguous):
            v = xp.ascontiguousarray(xp.asarray(v, dtype=dtype))
        if v.size == 0:                     # never hand out a null pointer for an empty table
            v = xp.zeros(1, dtype=dtype)
        self.arrays[name] = v
        return int(v.data.ptr) if xp.__name__ == "cupy" else int(v.ctypes.data)

    def get(self, name: str):
        i = self._index[name]
        kind = self._fields[i][1]
        if kind == "f64":
            return float(self.words[i:i + 1].view(np.float64)[0])
        if kind == "i64":
            return int(self.words[i])
        return self.arrays.get(name)

    def address(self) -> int:
        """Host address of the block (CPU build)."""
        return int(self.words.ctypes.data)

    def device_copy(self):
        """The block as a device array (GPU build); the caller keeps it alive during the launch."""
        import cupy

        return cupy.asarray(self.words.view(np.uint8))


__all__ = ["ParamBlock", "param_fields", "defines"]
