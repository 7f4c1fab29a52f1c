"""Parcel identities (UPU S10 and GS1 SSCC): check digits and a 64-bit key for each id.

Ids become integers so that a manifest of millions of rows is indexed with numpy, not with
Python strings. S10 keys have bit 62 set; SSCC keys are the 18-digit number itself; 0 = no id.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vision.labels import gs1_check_digit, s10_check_digit

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)  # for the vectorised key computation below
S10_FLAG = np.uint64(1 << 62)
NO_KEY = 0


def sscc_check_digit(body17: str) -> int:
    """GS1 mod-10 check digit of the first 17 digits of an SSCC (the label rules live in vision)."""
    return gs1_check_digit(body17)


def _is_upper(ch: str) -> bool:
    return "A" <= ch <= "Z"


def parcel_key(parcel_id: str) -> int:
    """The 64-bit key of a valid S10 or SSCC id; 0 when the id is not valid."""
    p = parcel_id.strip().upper()
    if len(p) == 13:
        if not (_is_upper(p[0]) and _is_upper(p[1]) and _is_upper(p[11]) and _is_upper(p[12])):
            return NO_KEY
        digits = p[2:11]
        if not digits.isascii() or not digits.isdigit():
            return NO_KEY
        if s10_check_digit(digits[:8]) != int(digits[8]):
            return NO_KEY
        prefix = (ord(p[0]) - 65) * 26 + ord(p[1]) - 65
        country = (ord(p[11]) - 65) * 26 + ord(p[12]) - 65
        return int(S10_FLAG) | ((prefix * 1_000_000_000 + int(digits)) * 676 + country)
    if len(p) == 18 and p.isascii() and p.isdigit():
        if sscc_check_digit(p[:17]) != int(p[17]) or int(p) == 0:
            return NO_KEY
        return int(p)
    return NO_KEY


def key_to_id(key: int) -> str:
    """Inverse of :func:`parcel_key` (for reports and the generator's tests)."""
    if key & int(S10_FLAG):
        v = key & ~int(S10_FLAG)
        v, country = divmod(v, 676)
        prefix, digits = divmod(v, 1_000_000_000)
        return (
            chr(65 + prefix // 26) + chr(65 + prefix % 26) + f"{digits:09d}"
            + chr(65 + country // 26) + chr(65 + country % 26)
        )
    return f"{key:018d}"


def parcel_keys(chars: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """Vectorised :func:`parcel_key` over ids given as an (n, 18) byte matrix and lengths.

    Bytes must already be upper-cased; rows with invalid ids get key 0. Works column by column
    (one vector operation per character position), never widening the whole matrix.
    """
    n = chars.shape[0]
    out = np.zeros(n, dtype=np.uint64)
    for length in (13, 18):
        idx = np.flatnonzero(lengths == length)
        if len(idx) == 0:
            continue
        c = chars if len(idx) == n else chars[idx]
        d = [c[:, j] - np.uint8(48) for j in range(length)]  # digit value; > 9 when not a digit
        if length == 13:
            letters = [c[:, j].astype(np.int64) - 65 for j in (0, 1, 11, 12)]
            ok = np.ones(len(idx), bool)
            for v in letters:
                ok &= (v >= 0) & (v <= 25)
            num = np.zeros(len(idx), np.int64)
            s = np.zeros(len(idx), np.int64)
            for j in range(2, 11):
                ok &= d[j] <= 9
                num = num * 10 + d[j]
                if j < 10:
                    s += S10_WEIGHTS[j - 2] * d[j].astype(np.int64)
            chk = 11 - s % 11
            chk = np.where(chk == 10, 0, np.where(chk == 11, 5, chk))
            ok &= chk == d[10]
            key = ((((letters[0] * 26 + letters[1]) * 1_000_000_000 + num) * 676 + letters[2] * 26 + letters[3])
                   .astype(np.uint64) | S10_FLAG)
        else:
            ok = np.ones(len(idx), bool)
            key = np.zeros(len(idx), np.uint64)
            s = np.zeros(len(idx), np.int64)
            for j in range(18):
                ok &= d[j] <= 9
                key = key * np.uint64(10) + d[j]
                if j < 17:
                    s += (3 if j % 2 == 0 else 1) * d[j].astype(np.int64)
            ok &= (10 - s % 10) % 10 == d[17]
        key = np.where(ok, key, np.uint64(0))
        if len(idx) == n:
            out = key
        else:
            out[idx] = key
    return out


def ids_to_matrix(ids: npt.ArrayLike) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Turn an array of id strings into the (n, 18) upper-case byte matrix :func:`parcel_keys` reads."""
    a = np.char.upper(np.char.strip(np.asarray(ids).astype("U")))
    lengths = np.char.str_len(a).astype(np.int64)
    b = np.asarray(a.astype("S18"))  # non-ASCII would raise; callers pass ids, checked below
    mat = np.frombuffer(b.tobytes(), dtype=np.uint8).reshape(len(b), b.dtype.itemsize)
    if mat.shape[1] < 18:
        mat = np.pad(mat, ((0, 0), (0, 18 - mat.shape[1])))
    return mat[:, :18], np.where(lengths > 18, 0, lengths)


def keys_of(ids: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Keys of an array of id strings (0 for invalid ones); non-ASCII ids are invalid."""
    arr = np.asarray(ids).astype("U")
    ascii_ok = np.array([s.isascii() for s in arr.tolist()], dtype=bool) if arr.size else np.zeros(0, bool)
    safe = np.where(ascii_ok, arr, "")
    mat, lengths = ids_to_matrix(safe)
    return parcel_keys(mat, lengths)
