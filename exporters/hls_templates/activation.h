// LEAKY_RELU and PRELU (TFLite's int8 kernels): v = q - zp_in; v >= 0 is rescaled by
// s_in / s_out, v < 0 by s_in * alpha / s_out (PRELU: v * (a - zp_a) by s_in * s_a / s_out,
// alpha broadcast like the input, CFG::SA its strides).
#ifndef CONVDEPLOY_ACTIVATION_H
#define CONVDEPLOY_ACTIVATION_H

#include "broadcast.h"
#include "fixed_point.h"

namespace cd {

template <class CFG, class TI, class TO>
void leaky_relu(const TI* x, TO* y) {
LEAKY_LOOP:
  for (int i = 0; i < CFG::N; ++i) {
#pragma HLS PIPELINE II = 1
    const int64_t v = static_cast<int64_t>(x[i]) - CFG::ZP_IN;
    const int64_t r = v >= 0 ? multiply_by_quantized_multiplier<CFG::ROUNDING>(v, CFG::M1, CFG::SH1)
                             : multiply_by_quantized_multiplier<CFG::ROUNDING>(v, CFG::M2, CFG::SH2);
    y[i] = static_cast<TO>(clamp(r + CFG::ZP_OUT, CFG::LOW, CFG::HIGH));
  }
}

template <class CFG, class TI, class TO>
void prelu(const TI* x, const int8_t* alpha, TO* y) {
  int i = 0;
PRELU_LOOP:
  CD_FOR_EACH4(CFG::D) {
#pragma HLS PIPELINE II = 1
    const int64_t v = static_cast<int64_t>(x[i]) - CFG::ZP_IN;
    const int64_t a = static_cast<int64_t>(alpha[offset<CFG::SA>(i0, i1, i2, i3)]) -
                      CFG::ZP_ALPHA;
    const int64_t r =
        v >= 0 ? multiply_by_quantized_multiplier<CFG::ROUNDING>(v, CFG::M1, CFG::SH1)
               : multiply_by_quantized_multiplier<CFG::ROUNDING>(v * a, CFG::M2, CFG::SH2);
    y[i] = static_cast<TO>(clamp(r + CFG::ZP_OUT, CFG::LOW, CFG::HIGH));
  }
}

}  // namespace cd

#endif
