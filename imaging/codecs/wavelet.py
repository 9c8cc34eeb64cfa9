"""The reduced resolutions of a lossless (reversible 5/3) JPEG 2000 / HTJ2K codestream, computed from its samples.

A decoder asked for `skip` fewer levels returns the LL band of the wavelet transform `skip` levels down, after the
inverse colour transform. Decoders write that band into the container type of the full image, and OpenJPH (through
imagecodecs) wraps values outside it: the band's overshoot at edges (below 0 next to a bright edge, say) comes back
as 65,4xx instead of a negative number, so its checksums would be wrong. The lifting steps are exact integer
arithmetic, and a lossless codestream holds the wavelet transform of exactly the samples it decodes to, so the band
is computed here from those samples, with ITU-T T.800 Annex F's lifting (vertical, then horizontal) and symmetric
extension, with no range limit: each pass runs in int16 where the bounds of its values prove that nothing can
overflow (the first level of 12-bit data, at half the memory traffic of int32), in int32 otherwise. Also used for
JPEG 2000 (Part 1) frames, which no Python decoder decodes at a reduced resolution.
"""
from __future__ import annotations

import numpy as np


def reduced_resolutions(samples: np.ndarray, levels: int, *, rct: bool = False,
                        sample_bounds: tuple[int, int] | None = None) -> list[np.ndarray]:
    """[LL_1, ..., LL_levels] of a (rows, cols) or (rows, cols, components) frame, as int32, unclamped.

    `rct`: the codestream applies the reversible colour transform (RGB input): the bands are taken of Y, Cb, Cr
    and turned back into R, G, B, as a decoder does. `sample_bounds`: (min, max) of the samples where the caller
    has them already.
    """
    if rct:
        current = _forward_rct(samples.astype(np.int32))
        bounds = None
    else:
        current = samples
        bounds = sample_bounds or ((int(samples.min()), int(samples.max())) if samples.size else (0, 0))
    bands = []
    for _ in range(levels):
        current = _in_type_for(current, bounds)
        current = _low_pass(current)  # vertical
        bounds = _low_pass_bounds(bounds)
        current = _in_type_for(current, bounds)
        current = _low_pass(current, axis=1)  # horizontal
        bounds = _low_pass_bounds(bounds)
        bands.append(_inverse_rct(current) if rct else current.astype(np.int32, copy=False))
    return bands


_INT16 = np.iinfo(np.int16)


def _low_pass_bounds(bounds: tuple[int, int] | None) -> tuple[int, int] | None:
    """Bounds of the low-pass output of values within `bounds` (None: unknown). With width w = hi - lo, the
    high-pass values lie in [-w, w] and s = x + floor((d + d' + 2) / 4) in [lo - ceil(w/2), hi + floor((w+1)/2)]."""
    if bounds is None:
        return None
    low, high = bounds
    width = high - low
    return low - (width + 1) // 2, high + (width + 1) // 2


def _fits_int16(bounds: tuple[int, int] | None) -> bool:
    """Whether every intermediate of one lifting pass over values within `bounds` fits int16: the sums of two
    inputs, the high-pass values, the sums of two of them plus 2, and the outputs."""
    if bounds is None:
        return False
    low, high = bounds
    width = high - low
    out_low, out_high = _low_pass_bounds(bounds)
    return (_INT16.min <= 2 * low and 2 * high <= _INT16.max and 2 * width + 2 <= _INT16.max
            and _INT16.min <= out_low and out_high <= _INT16.max)


def _in_type_for(values: np.ndarray, bounds: tuple[int, int] | None) -> np.ndarray:
    """`values` as int16 when the next pass provably fits it, else as int32."""
    return values.astype(np.int16 if _fits_int16(bounds) else np.int32, copy=False)


def _low_pass(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """The low-pass half of one 1D 5/3 lifting pass along `axis` (T.800 F.3.8.2 with F.3.7's extension).

    The even and odd samples along the axis are taken apart first: along axis 1 they are copied out, so that every
    lifting step below runs over contiguous memory (two short copies cost less than strided arithmetic).
    """
    n = x.shape[axis]
    if n == 1:
        return x.copy()

    def along(array: np.ndarray, start: int | None, stop: int | None = None) -> np.ndarray:
        return array[start:stop] if axis == 0 else array[:, start:stop]

    if axis == 0:
        even, odd = x[0::2], x[1::2]
    else:
        even, odd = np.ascontiguousarray(x[:, 0::2]), np.ascontiguousarray(x[:, 1::2])
    n_even, n_odd = even.shape[axis], odd.shape[axis]
    # High-pass: d[k] = x[2k+1] - floor((x[2k] + x[2k+2]) / 2), x[n] mirrored to x[n-2] when n is even.
    high = np.empty_like(odd)
    if n % 2 == 0:
        np.add(along(even, 0, n_odd - 1), along(even, 1, n_odd), out=along(high, 0, n_odd - 1))
        np.add(along(even, n_odd - 1, n_odd), along(x, n - 2, n - 1), out=along(high, n_odd - 1, n_odd))
    else:
        np.add(along(even, 0, n_odd), along(even, 1, n_odd + 1), out=high)
    high >>= 1
    np.subtract(odd, high, out=high)
    # Low-pass: s[k] = x[2k] + floor((d[k-1] + d[k] + 2) / 4), d[-1] mirrored to d[0], d[n_even-1] to d[n_odd-1].
    low = np.empty_like(even)
    np.add(along(high, 0, 1), along(high, 0, 1), out=along(low, 0, 1))
    if n_even == n_odd:
        np.add(along(high, 0, -1), along(high, 1), out=along(low, 1))
    else:
        np.add(along(high, 0, -1), along(high, 1), out=along(low, 1, n_even - 1))
        np.add(along(high, n_odd - 1, n_odd), along(high, n_odd - 1, n_odd), out=along(low, n_even - 1, n_even))
    low += 2
    low >>= 2
    low += even
    return low


def _forward_rct(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([(r + 2 * g + b) >> 2, b - g, r - g], axis=-1)


def _inverse_rct(ycc: np.ndarray) -> np.ndarray:
    y, cb, cr = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    g = y - ((cb + cr) >> 2)
    return np.stack([cr + g, g, cb + g], axis=-1)
