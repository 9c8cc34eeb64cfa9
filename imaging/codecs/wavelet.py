"""The reduced resolutions of a lossless (reversible 5/3) JPEG 2000 / HTJ2K codestream, computed from its samples.

A decoder asked for `skip` fewer levels returns the LL band of the wavelet transform `skip` levels down, after the
inverse colour transform. Decoders write that band into the container type of the full image, and OpenJPH (through
imagecodecs) wraps values outside it: the band's overshoot at edges (below 0 next to a bright edge, say) comes back
as 65,4xx instead of a negative number, so its checksums would be wrong. The lifting steps are exact integer
arithmetic, and a lossless codestream holds the wavelet transform of exactly the samples it decodes to, so the band
is computed here from those samples, with ITU-T T.800 Annex F's lifting (vertical, then horizontal) and symmetric
extension, in int32 with no range limit. Also used for JPEG 2000 (Part 1) frames, which no Python decoder decodes
at a reduced resolution.
"""
from __future__ import annotations

import numpy as np


def reduced_resolutions(samples: np.ndarray, levels: int, *, rct: bool = False) -> list[np.ndarray]:
    """[LL_1, ..., LL_levels] of a (rows, cols) or (rows, cols, components) frame, as int32, unclamped.

    `rct`: the codestream applies the reversible colour transform (RGB input): the bands are taken of Y, Cb, Cr
    and turned back into R, G, B, as a decoder does.
    """
    current = samples.astype(np.int32)
    if rct:
        current = _forward_rct(current)
    bands = []
    for _ in range(levels):
        current = _low_pass(current)  # vertical
        current = np.ascontiguousarray(_low_pass(current.swapaxes(0, 1)).swapaxes(0, 1))  # horizontal, on a view
        bands.append(_inverse_rct(current) if rct else current)
    return bands


def _low_pass(x: np.ndarray) -> np.ndarray:
    """The low-pass half of one 1D 5/3 lifting pass along axis 0 (T.800 F.3.8.2 with F.3.7's extension)."""
    n = x.shape[0]
    if n == 1:
        return x.copy()
    even, odd = x[0::2], x[1::2]
    n_even, n_odd = even.shape[0], odd.shape[0]
    # High-pass: d[k] = x[2k+1] - floor((x[2k] + x[2k+2]) / 2), x[n] mirrored to x[n-2] when n is even.
    high = np.empty_like(odd)
    if n % 2 == 0:
        np.add(even[: n_odd - 1], even[1:n_odd], out=high[: n_odd - 1])
        np.add(even[n_odd - 1], x[n - 2], out=high[n_odd - 1])
    else:
        np.add(even[:n_odd], even[1 : n_odd + 1], out=high)
    high >>= 1
    np.subtract(odd, high, out=high)
    # Low-pass: s[k] = x[2k] + floor((d[k-1] + d[k] + 2) / 4), d[-1] mirrored to d[0], d[n_even-1] to d[n_odd-1].
    low = np.empty_like(even)
    low[0] = high[0] * 2
    if n_even == n_odd:
        np.add(high[:-1], high[1:], out=low[1:])
    else:
        np.add(high[:-1], high[1:], out=low[1 : n_even - 1])
        low[n_even - 1] = high[n_odd - 1] * 2
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
