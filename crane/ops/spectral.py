"""Learned filters in the frequency domain of the embedding dimension (SMORE).

Each row of a (rows, n) real matrix is taken to its orthonormal real spectrum, multiplied by
a learned complex filter (one weight per frequency, shared by every row) and brought back:

- `real_spectrum(x)`: `torch.fft.rfft(x, dim=1, norm="ortho")`, (rows, n // 2 + 1) complex;
- `filtered_inverse(spectrum, weight, n)`: `torch.fft.irfft(spectrum * weight, n, dim=1,
  norm="ortho")` with `weight` a real (1, n // 2 + 1, 2) parameter read as complex numbers.

A product of several spectra before `filtered_inverse` is the circular convolution of their
rows (SMORE's cross-modality fusion). The FFT costs O(rows n log n); autograd's own FFT
backward is exact, so no hand-written backward is needed.

Plain-autograd references: `reference_real_spectrum` and `reference_filtered_inverse`, the
same maps as dense n x n cosine and sine matrices (the inverse follows irfft's convention:
the imaginary parts of the zero and, for even n, the Nyquist frequency are ignored).
tests/ops/test_spectral.py checks values and gradients of the two against each other.
"""

from __future__ import annotations

import math

import torch


def real_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal real FFT of every row: (rows, n) real -> (rows, n // 2 + 1) complex."""
    return torch.fft.rfft(x, dim=1, norm="ortho")


def filtered_inverse(spectrum: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """Rows of length `n` whose orthonormal spectrum is `spectrum` times the complex filter
    `weight`, a real (1, n // 2 + 1, 2) tensor of (real, imaginary) pairs."""
    check_filter(weight, n)
    return torch.fft.irfft(spectrum * torch.view_as_complex(weight), n=n, dim=1, norm="ortho")


def check_filter(weight: torch.Tensor, n: int) -> None:
    expected = (1, n // 2 + 1, 2)
    if tuple(weight.shape) != expected:
        raise ValueError(f"spectral filter for rows of length {n} must have shape {expected}, "
                         f"got {tuple(weight.shape)}")


def reference_real_spectrum(x: torch.Tensor) -> torch.Tensor:
    """`real_spectrum` as dense products: X_k = sum_j x_j exp(-2 pi i j k / n) / sqrt(n)."""
    n = x.shape[1]
    cos, sin = _dft_tables(n, x.dtype, x.device)
    return torch.complex(x @ cos, -(x @ sin)) / math.sqrt(n)


def reference_filtered_inverse(spectrum: torch.Tensor, weight: torch.Tensor,
                               n: int) -> torch.Tensor:
    """`filtered_inverse` as dense products: y_j = sum_k c_k Re(Y_k exp(2 pi i j k / n))
    / sqrt(n), c_k = 1 at the zero (and Nyquist) frequency and 2 elsewhere, where the
    imaginary parts that irfft ignores do not enter."""
    check_filter(weight, n)
    filtered = spectrum * torch.complex(weight[..., 0], weight[..., 1])
    cos, sin = _dft_tables(n, filtered.real.dtype, filtered.device)
    counts = torch.full((n // 2 + 1,), 2.0, dtype=cos.dtype, device=cos.device)
    counts[0] = 1.0
    if n % 2 == 0:
        counts[-1] = 1.0
    # Re(Y e^{i t}) = Re(Y) cos t - Im(Y) sin t; sin t is 0 at the frequencies irfft reads
    # as real, so their imaginary parts drop out.
    return ((filtered.real * counts) @ cos.T - (filtered.imag * counts) @ sin.T) / math.sqrt(n)


def _dft_tables(n: int, dtype: torch.dtype, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, n // 2 + 1) tables cos(2 pi j k / n) and sin(2 pi j k / n)."""
    j = torch.arange(n, dtype=torch.float64)
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    # j k mod n keeps the angles small, so the tables are exact to float rounding
    angle = 2 * math.pi * (torch.outer(j, k) % n) / n
    return (torch.cos(angle).to(dtype=dtype, device=device),
            torch.sin(angle).to(dtype=dtype, device=device))
