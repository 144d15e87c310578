// MUL (TFLite's quantized MUL): the product of the offset codes, an int32, times
// s_a * s_b / s_out as a fixed-point multiplier, plus the output zero point; broadcasting as
// in add.h.
#ifndef CONVDEPLOY_MUL_H
#define CONVDEPLOY_MUL_H

#include "broadcast.h"
#include "fixed_point.h"

namespace cd {

template <class CFG, class TA, class TB, class TO>
void mul(const TA* a, const TB* b, TO* y) {
  int i = 0;
MUL_LOOP:
  CD_FOR_EACH4(CFG::D) {
#pragma HLS PIPELINE II = 1
    const int64_t prod =
        (static_cast<int64_t>(a[offset<CFG::SA>(i0, i1, i2, i3)]) - CFG::ZP_A) *
        (static_cast<int64_t>(b[offset<CFG::SB>(i0, i1, i2, i3)]) - CFG::ZP_B);
    const int64_t v = multiply_by_quantized_multiplier<CFG::ROUNDING>(
                          prod, CFG::M, CFG::SH) + CFG::ZP_OUT;
    y[i] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
  }
}

}  // namespace cd

#endif
