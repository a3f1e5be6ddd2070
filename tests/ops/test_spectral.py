"""crane.ops.spectral: the FFT filters against dense cosine/sine products, values and
gradients, for even and odd lengths, one spectrum (a filter) and a product of two (a
circular convolution)."""

import pytest
import torch

from crane.ops.spectral import (filtered_inverse, real_spectrum, reference_filtered_inverse,
                                reference_real_spectrum)


def tensors(n: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(5, n, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, n, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, n // 2 + 1, 2, generator=generator, dtype=torch.float64,
                         requires_grad=True)
    return x, y, weight


@pytest.mark.parametrize("n", [1, 2, 7, 8, 64])
def test_spectrum_matches_dense_dft(n):
    x, _, _ = tensors(n)
    ours, reference = real_spectrum(x), reference_real_spectrum(x)
    torch.testing.assert_close(ours, reference)
    grad = torch.randn(ours.shape, dtype=ours.dtype, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(torch.autograd.grad(ours, x, grad)[0],
                               torch.autograd.grad(reference, x, grad)[0])


@pytest.mark.parametrize("n", [1, 2, 7, 8, 64])
@pytest.mark.parametrize("two_spectra", [False, True])
def test_filtered_inverse_matches_dense_products(n, two_spectra):
    x, y, weight = tensors(n)
    inputs = (x, y, weight) if two_spectra else (x, weight)

    def run(spectrum, inverse):
        product = spectrum(x) * spectrum(y) if two_spectra else spectrum(x)
        return inverse(product, weight, n)

    ours = run(real_spectrum, filtered_inverse)
    reference = run(reference_real_spectrum, reference_filtered_inverse)
    assert ours.shape == (5, n) and not ours.is_complex()
    torch.testing.assert_close(ours, reference)
    grad = torch.randn(5, n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for got, want in zip(torch.autograd.grad(ours, inputs, grad),
                         torch.autograd.grad(reference, inputs, grad)):
        torch.testing.assert_close(got, want)


def test_unit_filter_is_the_identity_and_a_product_is_a_circular_convolution():
    x, y, weight = tensors(6)
    unit = torch.zeros_like(weight)
    unit[..., 0] = 1.0
    torch.testing.assert_close(filtered_inverse(real_spectrum(x), unit, 6), x)
    convolved = filtered_inverse(real_spectrum(x) * real_spectrum(y), unit, 6)
    by_hand = torch.stack([sum(x[:, j] * y[:, (i - j) % 6] for j in range(6))
                           for i in range(6)], dim=1) / 6 ** 0.5
    torch.testing.assert_close(convolved, by_hand)


def test_a_filter_of_the_wrong_shape_is_refused():
    x, _, weight = tensors(8)
    with pytest.raises(ValueError, match=r"length 8 must have shape \(1, 5, 2\), got \(1, 4, 2\)"):
        filtered_inverse(real_spectrum(x), weight[:, :4], 8)
