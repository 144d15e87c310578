// MEAN over H and W (TFLite's QuantizedMeanOrSum): the int32 sum of the codes less the zero
// point's share, times s_in / s_out / count with the count folded into the multiplier.
#ifndef CONVDEPLOY_MEAN_H
#define CONVDEPLOY_MEAN_H

#include "fixed_point.h"

namespace cd {

template <class CFG, class TI, class TO>
void mean(const TI* x, TO* y) {
  const int P = CFG::H * CFG::W;
MEAN_C:
  for (int c = 0; c < CFG::C; ++c) {
    int64_t total = 0;
  MEAN_P:
    for (int p = 0; p < P; ++p) {
#pragma HLS PIPELINE II = 1
      total += static_cast<int64_t>(x[c * P + p]);
    }
    total -= static_cast<int64_t>(CFG::ZP_IN) * P;
    const int64_t v =
        multiply_by_quantized_multiplier<CFG::ROUNDING>(total, CFG::M, CFG::SH) + CFG::ZP_OUT;
    y[c] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
  }
}

}  // namespace cd

#endif
