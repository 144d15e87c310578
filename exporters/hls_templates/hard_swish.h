// HARD_SWISH as TFLite's int8 kernel (reference_ops::HardSwish): 16-bit fixed point, the input
// on a 2^7 finer grid, a "relu-ish" factor in [0, 1] from saturating rescaling of [-3, 3],
// a truncating doubling high multiply, then the output shift (multipliers from
// quant.integer_kernels.hard_swish_multipliers).
#ifndef CONVDEPLOY_HARD_SWISH_H
#define CONVDEPLOY_HARD_SWISH_H

#include "fixed_point.h"

namespace cd {

// gemmlowp's 16-bit SaturatingRoundingDoublingHighMul: (a * b + 2^14) >> 15.
inline int64_t rounding_doubling_high_mul16(int64_t a, int64_t b) {
  if (a == -32768 && b == -32768) return 32767;
  return (a * b + (int64_t(1) << 14)) >> 15;
}

inline int64_t saturate16(int64_t v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : v); }

template <class CFG, class TI, class TO>
void hard_swish(const TI* x, TO* y) {
HARD_SWISH_LOOP:
  for (int i = 0; i < CFG::N; ++i) {
#pragma HLS PIPELINE II = 1
    const int64_t hires = (static_cast<int64_t>(x[i]) - CFG::ZP_IN) * 128;
    const int64_t preshift = rounding_doubling_high_mul16(hires, CFG::OUT_MULT);
    int64_t reluish = hires;
    if (CFG::RELU_EXP > 0) reluish = saturate16(reluish * (int64_t(1) << (CFG::RELU_EXP - 1)));
    reluish = rounding_doubling_high_mul16(reluish, CFG::RELU_MULT);
    if (CFG::RELU_EXP > 0) reluish = saturate16(reluish * 2);
    if (CFG::RELU_EXP < 0) reluish = rounding_divide_by_pot(reluish, -CFG::RELU_EXP);
    reluish = (reluish + 32768) >> 1;
    int64_t product = reluish * preshift;
    product = product / 32768;  // truncating, as SaturatingDoublingHighMul
    if (reluish == -32768 && preshift == -32768) product = 32767;
    const int64_t v = rounding_divide_by_pot(product, -CFG::OUT_EXP) + CFG::ZP_OUT;
    y[i] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
  }
}

}  // namespace cd

#endif
