#!/usr/bin/env python3
"""Writes tests/data/e4m3-reference.tsv: FP8 E4M3 ("e4m3fn") conversions by ml_dtypes (the type JAX
and PyTorch's float8_e4m3fn follow), for tst_quant's check of folio::f32_to_e4m3 / e4m3_to_f32.

Rows: "code HEX F32BITS" (each of the 256 codes and its value as float32 bits), and
"round F32BITS HEX" (a float32 and the code it rounds to: every midpoint between neighbouring
codes, a float32 step either side of it, seeded random values over the whole range, values past
448, zeros and NaN). ml_dtypes rounds to nearest even and turns values past the largest finite
into NaN; Folio saturates them (as CUDA's satfinite conversion does), so for |x| > 464 (the
midpoint past 448 rounds to NaN there) the table records 448's code: that is the rule Folio keeps.

    pip install ml_dtypes numpy && python3 tools/make_fp8_reference.py
"""
import os
import struct

import ml_dtypes
import numpy as np

E4M3 = ml_dtypes.float8_e4m3fn


def bits(x):
    return struct.unpack("<I", struct.pack("<f", float(np.float32(x))))[0]


def code_of(x):
    x = np.float32(x)
    if np.isnan(x):
        return 0x7F | (0x80 if np.signbit(x) else 0)
    if abs(x) > 448:  # Folio saturates (ml_dtypes would give NaN past 464)
        return 0x7E | (0x80 if x < 0 else 0)
    return int(np.array([x], dtype=np.float32).astype(E4M3).view(np.uint8)[0])


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "e4m3-reference.tsv")
    rows = ["# made by tools/make_fp8_reference.py with ml_dtypes %s" % ml_dtypes.__version__]
    values = np.arange(256, dtype=np.uint8).view(E4M3).astype(np.float32)
    for c in range(256):
        rows.append("code\t%02x\t%08x" % (c, bits(values[c])))
    finite = sorted({float(v) for v in values if np.isfinite(v) and v >= 0})
    probes = [0.0, -0.0, 448.0, -448.0, 449.0, 464.0, 465.0, 1e6, -1e6, float("inf"), float("-inf"), 1e-30]
    for lo, hi in zip(finite, finite[1:]):
        mid = np.float32((lo + hi) / 2)
        for m in (mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(1e9))):
            probes += [float(m), -float(m)]
    rng = np.random.default_rng(7)
    probes += list((rng.standard_normal(3000) * np.exp2(rng.integers(-12, 10, 3000))).astype(np.float32))
    for p in probes:
        x = np.float32(p)
        rows.append("round\t%08x\t%02x" % (bits(x), code_of(x)))
    with open(out, "w") as f:
        f.write("\n".join(rows) + "\n")
    print("wrote %d rows to %s" % (len(rows) - 1, out))


if __name__ == "__main__":
    main()
