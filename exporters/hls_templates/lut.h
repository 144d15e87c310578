// LOGISTIC, TANH, GELU as TFLite's int8 kernels compute them: a 256-entry table built at
// export time (quant.integer_kernels.lut_table), indexed by the input code (uint8 codes shifted
// by 128 into the table's int8 order, CFG::OFFSET).
#ifndef CONVDEPLOY_LUT_H
#define CONVDEPLOY_LUT_H

#include <cstdint>

namespace cd {

template <class CFG, class TI, class TO>
void lut(const TI* x, const int16_t table[256], TO* y) {
LUT_LOOP:
  for (int i = 0; i < CFG::N; ++i) {
#pragma HLS PIPELINE II = 1
    y[i] = static_cast<TO>(table[static_cast<int32_t>(x[i]) + CFG::OFFSET]);
  }
}

}  // namespace cd

#endif
