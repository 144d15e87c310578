// Data movement without arithmetic: STRIDED_SLICE, TRANSPOSE and RESHAPE as one strided copy
// (output index order, input offsets from CFG::S strides and CFG::START), CONCATENATION as
// block copies. Four per-sample dimensions.
#ifndef CONVDEPLOY_LAYOUT_H
#define CONVDEPLOY_LAYOUT_H

#include "broadcast.h"

namespace cd {

template <class CFG, class TI, class TO>
void strided_copy(const TI* x, TO* y) {
  int i = 0;
COPY_LOOP:
  CD_FOR_EACH4(CFG::D) {
#pragma HLS PIPELINE II = 1
    y[i] = static_cast<TO>(x[CFG::START + i0 * CFG::S[0] + i1 * CFG::S[1] +
                             i2 * CFG::S[2] + i3 * CFG::S[3]]);
  }
}

// One input's part of a concatenation: OUTER blocks of INNER elements, written at OFFSET
// within output blocks of STRIDE elements.
template <class CFG, class TI, class TO>
void concat_part(const TI* x, TO* y) {
CONCAT_OUTER:
  for (int o = 0; o < CFG::OUTER; ++o)
    for (int i = 0; i < CFG::INNER; ++i) {
#pragma HLS PIPELINE II = 1
      y[o * CFG::STRIDE + CFG::OFFSET + i] = static_cast<TO>(x[o * CFG::INNER + i]);
    }
}

}  // namespace cd

#endif
