// ADD and SUB (TFLite's quantized ADD): both inputs offset by their zero points, shifted left
// by LEFT bits of headroom, rescaled to twice the larger input scale, summed, requantized to the
// output (SUB: the second multiplier negated, in CFG). Numpy broadcasting over four per-sample
// dimensions: CFG::D are the output's, CFG::SA/SB the inputs' strides (0 on a broadcast axis).
#ifndef CONVDEPLOY_ADD_H
#define CONVDEPLOY_ADD_H

#include "broadcast.h"
#include "fixed_point.h"

namespace cd {

template <class CFG, class TA, class TB, class TO>
void add(const TA* a, const TB* b, TO* y) {
  int i = 0;
ADD_LOOP:
  CD_FOR_EACH4(CFG::D) {
#pragma HLS PIPELINE II = 1
    const int64_t va = (static_cast<int64_t>(a[offset<CFG::SA>(i0, i1, i2, i3)]) -
                        CFG::ZP_A) * (int64_t(1) << CFG::LEFT);
    const int64_t vb = (static_cast<int64_t>(b[offset<CFG::SB>(i0, i1, i2, i3)]) -
                        CFG::ZP_B) * (int64_t(1) << CFG::LEFT);
    const int64_t raw =
        multiply_by_quantized_multiplier<CFG::ROUNDING>(va, CFG::MA, CFG::SHA) +
        multiply_by_quantized_multiplier<CFG::ROUNDING>(vb, CFG::MB, CFG::SHB);
    const int64_t v = multiply_by_quantized_multiplier<CFG::ROUNDING>(
                          raw, CFG::MO, CFG::SHO) + CFG::ZP_OUT;
    y[i] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
  }
}

}  // namespace cd

#endif
