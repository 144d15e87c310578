// SOFTMAX over the last axis as TFLite's int8 kernel (reference_ops::Softmax): differences to
// the row's maximum scaled into Q5.26, gemmlowp's fixed-point exp, the sum in Q12.19, its
// reciprocal by Newton-Raphson, the output on the fixed 1/256 grid (int8 zero point -128;
// uint8 tensors shifted by 128, CFG::SHIFT_IN / SHIFT_OUT). Every step as
// quant.integer_kernels.softmax, in 64-bit integers.
#ifndef CONVDEPLOY_SOFTMAX_H
#define CONVDEPLOY_SOFTMAX_H

#include "fixed_point.h"

namespace cd {

inline int64_t fp_mul(int64_t a, int64_t b) { return rounding_doubling_high_mul(a, b); }

// gemmlowp SaturatingRoundingMultiplyByPOT<exponent>
inline int64_t fp_pot(int64_t x, int exponent) {
  if (exponent <= 0) return rounding_divide_by_pot(x, -exponent);
  const int64_t threshold = (int64_t(1) << (31 - exponent)) - 1;
  return x > threshold ? INT32_MAX : (x < -threshold ? INT32_MIN : x * (int64_t(1) << exponent));
}

// exp(a) for a <= 0 in Q5.26; result in Q0.31.
inline int64_t exp_on_negative_values(int64_t a) {
  const int fractional = 26;
  const int64_t quarter = int64_t(1) << (fractional - 2);
  const int64_t a_mod = (a & (quarter - 1)) - quarter;
  const int64_t x = fp_pot(a_mod, 5) + (int64_t(1) << 28);
  const int64_t x2 = fp_mul(x, x), x3 = fp_mul(x2, x), x4 = fp_mul(x2, x2);
  const int64_t poly = fp_pot(fp_mul(fp_pot(x4, -2) + x3, 715827883) + x2, -1);
  int64_t result = 1895147668 + fp_mul(1895147668, x + poly);
  const int64_t remainder = a_mod - a;
  static const int barrel_exp[7] = {-2, -1, 0, 1, 2, 3, 4};
  static const int64_t barrel_mult[7] = {1672461947, 1302514674, 790015084, 290630308,
                                         39332535,   720401,     242};
  for (int k = 0; k < 7; ++k)
    if (remainder & (int64_t(1) << (fractional + barrel_exp[k])))
      result = fp_mul(result, barrel_mult[k]);
  return a == 0 ? INT32_MAX : result;
}

// 1 / (1 + a) for a in [0, 1) in Q0.31 (gemmlowp, three Newton-Raphson steps).
inline int64_t one_over_one_plus_x(int64_t a) {
  const int64_t total = a + INT32_MAX;
  const int64_t half = total >= 0 ? (total + 1) / 2 : -((-total + 1) / 2);
  int64_t x = 1515870810 + fp_mul(half, -1010580540);
  for (int k = 0; k < 3; ++k) {
    const int64_t one_minus = (int64_t(1) << 29) - fp_mul(half, x);
    x = x + fp_pot(fp_mul(x, one_minus), 2);
  }
  return fp_pot(x, 1);
}

inline int bit_length(int64_t v) {
  int n = 0;
  while (v > 0) { ++n; v >>= 1; }
  return n;
}

template <class CFG, class TI, class TO>
void softmax(const TI* x, TO* y) {
SOFTMAX_ROWS:
  for (int r = 0; r < CFG::ROWS; ++r) {
    const TI* row = x + r * CFG::DEPTH;
    int64_t top = INT64_MIN;
    for (int i = 0; i < CFG::DEPTH; ++i) {
      const int64_t c = static_cast<int64_t>(row[i]) - CFG::SHIFT_IN;
      top = c > top ? c : top;
    }
    int64_t exps[CFG::DEPTH];
    int64_t total = 0;
    for (int i = 0; i < CFG::DEPTH; ++i) {
      const int64_t diff = static_cast<int64_t>(row[i]) - CFG::SHIFT_IN - top;
      if (diff >= -CFG::RADIUS) {
        const int64_t scaled = rounding_doubling_high_mul(
            wrap32(diff * (int64_t(1) << CFG::LEFT)), CFG::MULT);
        exps[i] = exp_on_negative_values(scaled);
        total += rounding_divide_by_pot(exps[i], 12);
      } else {
        exps[i] = -1;  // outside the radius: the output's minimum
      }
    }
    const int headroom = 32 - bit_length(total);
    const int over_unit = 12 - headroom;
    const int64_t shifted = total * (int64_t(1) << headroom) - (int64_t(1) << 31);
    const int64_t scale = one_over_one_plus_x(wrap32(shifted));
    for (int i = 0; i < CFG::DEPTH; ++i) {
      int64_t out = -128;
      if (exps[i] >= 0) {
        out = rounding_divide_by_pot(fp_mul(scale, exps[i]), over_unit + 31 - 8) - 128;
        out = out < -128 ? -128 : (out > 127 ? 127 : out);
      }
      y[r * CFG::DEPTH + i] = static_cast<TO>(out + CFG::SHIFT_OUT);
    }
  }
}

}  // namespace cd

#endif
