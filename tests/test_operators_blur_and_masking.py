"""Blur, inpainting and downsampling against direct references (scipy), kernels and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch

from invdiff.operators import (Blur, CircularBlur, Downsampling, Inpainting, box_mask, gaussian_kernel, motion_kernels,
                               random_pixel_mask)

G = torch.Generator


def _image(shape=(2, 3, 20, 24), seed=0):
    return torch.randn(shape, dtype=torch.float64, generator=G().manual_seed(seed))


def _asymmetric_kernel():
    k = torch.zeros(5, 5, dtype=torch.float64)
    k[1, 3], k[2, 2], k[4, 0] = 0.5, 0.3, 0.2  # flips and shifts would show
    return k


def test_circular_blur_is_periodic_convolution():
    x, k = _image(), _asymmetric_kernel()
    got = CircularBlur(k, (20, 24)).A(x)
    ref = scipy.ndimage.convolve(x.numpy(), k.numpy()[None, None], mode="wrap")
    assert np.abs(got.numpy() - ref).max() < 1e-12


@pytest.mark.parametrize("padding,mode", [("valid", "valid"), ("zeros", "same")])
def test_blur_is_linear_convolution(padding, mode):
    x, k = _image(), _asymmetric_kernel()
    got = Blur(k, (20, 24), padding).A(x)
    ref = np.stack([[scipy.signal.convolve2d(c, k.numpy(), mode=mode) for c in b] for b in x.numpy()])
    assert got.shape == ref.shape and np.abs(got.numpy() - ref).max() < 1e-12


def test_circular_pinv_inverts_an_invertible_blur():
    k = gaussian_kernel(0.7, 5)
    op = CircularBlur(k, (20, 24))
    x = _image()
    assert float((op.A_dagger(op.A(x)) - x).norm() / x.norm()) < 1e-10


def test_kernels():
    k = gaussian_kernel(torch.tensor([0.5, 2.0]))
    assert k.shape == (2, 1, 13, 13) and torch.allclose(k.sum(dim=(-2, -1)), torch.ones(2, 1, dtype=torch.float64))
    m = motion_kernels(4, 15, G().manual_seed(3))
    assert m.shape == (4, 1, 15, 15) and bool((m >= 0).all())
    assert torch.allclose(m.sum(dim=(-2, -1)), torch.ones(4, 1, dtype=torch.float64))
    assert torch.equal(m, motion_kernels(4, 15, G().manual_seed(3)))
    assert not torch.equal(m[0], m[1])
    support = (m[0, 0] > 0).sum()
    assert 8 <= int(support) < 15 * 15 // 2  # a thin path, not a blob
    with pytest.raises(ValueError, match="odd"):
        motion_kernels(1, 8, G())
    with pytest.raises(ValueError, match="odd k"):
        Blur(torch.ones(4, 4), (16, 16))
    with pytest.raises(ValueError, match="does not fit"):
        CircularBlur(torch.ones(9, 9), (8, 8))


def test_inpainting_masks():
    m = random_pixel_mask((10, 12), 0.3, G().manual_seed(0))
    assert int(m.sum()) == 36 and torch.equal(m, random_pixel_mask((10, 12), 0.3, G().manual_seed(0)))
    b = box_mask((10, 12), 2, 3, 4, 5)
    assert int((b == 0).sum()) == 20 and torch.all(b[2:6, 3:8] == 0)
    x = _image((2, 3, 10, 12))
    op = Inpainting(b)
    assert torch.equal(op.A(x), x * b) and torch.equal(op.A_dagger(op.A(x)), x * b)
    with pytest.raises(ValueError, match="must lie inside"):
        box_mask((10, 12), 8, 0, 4, 4)
    with pytest.raises(ValueError, match="mask has 2 channels but the image has 3"):
        Inpainting(torch.ones(1, 2, 10, 12)).A(x)


def test_downsampling():
    x = _image((2, 1, 12, 16))
    box = Downsampling(4, (12, 16))
    ref = x.numpy().reshape(2, 1, 3, 4, 4, 4).mean(axis=(3, 5))
    assert np.abs(box.A(x).numpy() - ref).max() < 1e-14
    y = box.A(x)
    assert torch.allclose(box.A(box.A_dagger(y)), y, atol=1e-14)  # A A^+ = I on the range
    k = gaussian_kernel(1.0, 5)
    filtered = Downsampling(2, (12, 16), k).A(x)
    assert torch.allclose(filtered, CircularBlur(k, (12, 16)).A(x)[..., ::2, ::2], atol=1e-14)
    with pytest.raises(ValueError, match="not divisible"):
        Downsampling(5, (12, 16))
