// FULLY_CONNECTED over the last axis: x (ROWS, K), weights (OUT, K), int32 accumulators,
// per-output-channel requantization (TFLite's per-channel FC rounds once: CFG::ROUNDING).
#ifndef CONVDEPLOY_DENSE_H
#define CONVDEPLOY_DENSE_H

#include "fixed_point.h"
#include "types.h"

namespace cd {

template <class CFG, class TI, class TO, class W>
void dense(const TI* x, TO* y, W w, const bias_t* bias, const int32_t* multiplier,
           const int8_t* shift) {
#pragma HLS ALLOCATION operation instances = mul limit = CFG::MULTIPLIERS
DENSE_ROWS:
  for (int r = 0; r < CFG::ROWS; ++r) {
    const TI* xr = x + r * CFG::K;
  DENSE_OUT:
    for (int o = 0; o < CFG::OUT; ++o) {
      uint32_t acc = CFG::HAS_BIAS ? static_cast<uint32_t>(bias[o]) : 0u;
    DENSE_K:
      for (int k = 0; k < CFG::K; ++k) {
#pragma HLS PIPELINE II = 1
        acc += static_cast<uint32_t>(w[o * CFG::K + k] *
                                     (static_cast<int32_t>(xr[k]) - CFG::ZP_IN));
      }
      const int64_t v = multiply_by_quantized_multiplier<CFG::ROUNDING>(
                            wrap32(acc), multiplier[o], shift[o]) + CFG::ZP_OUT;
      y[r * CFG::OUT + o] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
    }
  }
}

}  // namespace cd

#endif
