// REQUANTIZE (TFLite's QUANTIZE of an integer tensor onto another grid):
// (q - zp_in) * s_in / s_out as a fixed-point multiplier, plus zp_out, clamped to the codes.
#ifndef CONVDEPLOY_REQUANTIZE_H
#define CONVDEPLOY_REQUANTIZE_H

#include "fixed_point.h"

namespace cd {

template <class CFG, class TI, class TO>
void requantize(const TI* x, TO* y) {
REQUANTIZE_LOOP:
  for (int i = 0; i < CFG::N; ++i) {
#pragma HLS PIPELINE II = 1
    const int64_t v = multiply_by_quantized_multiplier<CFG::ROUNDING>(
                          static_cast<int64_t>(x[i]) - CFG::ZP_IN, CFG::M, CFG::SH) +
                      CFG::ZP_OUT;
    y[i] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
  }
}

}  // namespace cd

#endif
