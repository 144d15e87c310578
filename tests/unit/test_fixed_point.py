"""The fixed-point requantization of the numerics contract against exact rational arithmetic."""
from fractions import Fraction

import numpy as np
import pytest

from convdeploy.quant.fixed_point import (Rounding, activation_range,
                                          multiply_by_quantized_multiplier, quantize_multiplier,
                                          rounding_divide_by_pot)


@pytest.mark.parametrize("real", [0.5, 0.75, 1.0, 1.5, 3e-4, 0.0123456789, 7.9, 2.0**-31 * 3])
def test_quantize_multiplier_represents_the_real_multiplier(real):
    m, shift = quantize_multiplier(real)
    assert 2**30 <= m < 2**31
    approx = m * 2.0 ** (shift - 31)
    assert abs(approx - real) <= real * 2.0**-30


def test_quantize_multiplier_renormalises_a_rounding_carry():
    m, shift = quantize_multiplier(1.0 - 2.0**-40)  # rounds up to 2**31: one more bit of shift
    assert (m, shift) == (2**30, 1)


def test_rounding_divide_by_pot_rounds_half_away_from_zero():
    x = np.array([5, 6, 7, -5, -6, -7, 4, -4])
    assert rounding_divide_by_pot(x, 2).tolist() == [1, 2, 2, -1, -2, -2, 1, -1]


def _exact_round(x: int, m: int, shift: int) -> int:
    """round(x * m * 2**(shift-31)), half away from zero, in exact rationals."""
    v = Fraction(x * m) * Fraction(2) ** (shift - 31)
    return int(v + Fraction(1, 2)) if v >= 0 else -int(-v + Fraction(1, 2))


def test_single_rounding_is_exact_rounding_and_double_is_within_one():
    rng = np.random.default_rng(0)
    x = rng.integers(-2**20, 2**20, 400)
    for real in (0.0009, 0.31, 0.77):
        m, shift = quantize_multiplier(real)
        exact = np.array([_exact_round(int(v), m, shift) for v in x])
        single = multiply_by_quantized_multiplier(x, m, shift, Rounding.SINGLE)
        double = multiply_by_quantized_multiplier(x, m, shift, Rounding.DOUBLE)
        ties_up = exact - single  # single rounding breaks ties upwards (towards +inf)
        assert set(np.unique(ties_up)) <= {0, 1}
        # double rounding can land on a tie after the high multiply: never more than 1 off
        assert np.abs(double - exact).max() <= 1


def test_activation_ranges_clamp_at_zero_and_six():
    assert activation_range("NONE", 10, 0.1, 0, 255) == (0, 255)
    assert activation_range("RELU", 10, 0.1, 0, 255) == (10, 255)
    assert activation_range("RELU6", 10, 0.1, 0, 255) == (10, 70)
    assert activation_range("RELU6", -128, 6 / 255, -128, 127) == (-128, 127)


def _gemmlowp_high_mul(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul, branch for branch, on Python ints."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)  # C++ division truncates towards zero
    return q if ab + nudge >= 0 else -q


def _gemmlowp_divide_by_pot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def test_vectorised_high_mul_equals_gemmlowp_on_edges_and_random_values():
    from convdeploy.quant.fixed_point import rounding_doubling_high_mul

    rng = np.random.default_rng(3)
    a = np.concatenate([rng.integers(-2**31, 2**31, 4000), [0, 1, -1, 2**31 - 1, -2**31,
                                                             2**30, -2**30, -2**30 - 1]])
    for b in (2**30, 2**30 + 1, 1518500250, 2**31 - 1, -2**31):
        got = rounding_doubling_high_mul(a, b)
        assert got.tolist() == [_gemmlowp_high_mul(int(v), b) for v in a]


def test_vectorised_divide_by_pot_equals_gemmlowp_with_per_channel_exponents():
    rng = np.random.default_rng(4)
    x = rng.integers(-2**31, 2**31, (50, 6))
    x[0] = [-4, -2, -1, 1, 2, 3]  # exact ties
    exponents = np.array([0, 1, 2, 5, 13, 31])
    got = rounding_divide_by_pot(x, exponents)
    want = [[_gemmlowp_divide_by_pot(int(v), int(e)) for v, e in zip(row, exponents)]
            for row in x]
    assert got.tolist() == want
    assert rounding_divide_by_pot(x, 0).tolist() == x.tolist()


def test_integer_conv_is_exact_on_float32_and_float64_paths():
    """The float convolution path against an int64 loop: 8-bit codes (float32 path) and
    16-bit codes (float64 path), dense and depthwise, with asymmetric padding."""
    from convdeploy.quant.integer_kernels import conv2d

    rng = np.random.default_rng(5)

    def reference(x, zp, w, bias, stride, pads, groups):
        t, l, b, r = pads
        xp = np.pad(x.astype(np.int64) - zp, ((0, 0), (0, 0), (t, b), (l, r)))
        n, c, h, wd = xp.shape
        o, cg, kh, kw = w.shape
        ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
        out = np.zeros((n, o, ho, wo), np.int64)
        for oc in range(o):
            g = oc // (o // groups)
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, g * cg:(g + 1) * cg, i:i + stride * ho:stride,
                               j:j + stride * wo:stride]
                    out[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j].astype(np.int64))
        return out + bias.reshape(1, -1, 1, 1)

    for high, depthwise in ((255, False), (255, True), (65535, False)):
        x = rng.integers(0, high + 1, (2, 6, 9, 9))
        zp = int(rng.integers(0, high + 1))
        w = rng.integers(-127, 128, (6, 1 if depthwise else 6, 3, 3))
        bias = rng.integers(-2**20, 2**20, 6)
        got = conv2d(x, zp, w, bias, strides=(2, 2), pads=(0, 1, 1, 0), dilations=(1, 1),
                     depthwise=depthwise)
        want = reference(x, zp, w, bias, 2, (0, 1, 1, 0), 6 if depthwise else 1)
        assert np.array_equal(got, want), (high, depthwise)
