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
