"""torch's element types as its pickles name them, and how their bytes lie."""

from __future__ import annotations

__all__ = ["FLOAT_DTYPES", "LAYOUT", "STORAGE_DTYPES", "TORCH_DTYPES"]

#: Legacy storage classes -> element dtype.
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "UntypedStorage": "uint8", "QInt8Storage": "int8",
    "QUInt8Storage": "uint8", "QInt32Storage": "int32",
}  # fmt: skip
#: torch dtype names (and aliases) -> element dtype.
TORCH_DTYPES = {
    "float64": "float64", "double": "float64", "float32": "float32", "float": "float32", "float16": "float16",
    "half": "float16", "bfloat16": "bfloat16", "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool", "uint16": "uint16",
    "uint32": "uint32", "uint64": "uint64", "complex64": "complex64", "cfloat": "complex64",
    "complex128": "complex128", "cdouble": "complex128", "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2",
}  # fmt: skip
#: element dtype -> (numpy little-endian code holding its bytes, item size).
LAYOUT = {
    "float64": ("<f8", 8), "float32": ("<f4", 4), "float16": ("<f2", 2), "bfloat16": ("<u2", 2), "int64": ("<i8", 8),
    "int32": ("<i4", 4), "int16": ("<i2", 2), "int8": ("i1", 1), "uint8": ("u1", 1), "bool": ("?", 1),
    "uint16": ("<u2", 2), "uint32": ("<u4", 4), "uint64": ("<u8", 8), "complex64": ("<c8", 8),
    "complex128": ("<c16", 16), "float8_e4m3fn": ("u1", 1), "float8_e5m2": ("u1", 1),
}  # fmt: skip
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
