// PAD with the input's zero point (real 0) over four per-sample dimensions: CFG::D are the
// input's dimensions, CFG::O the output's, CFG::B the leading pads.
#ifndef CONVDEPLOY_PAD_H
#define CONVDEPLOY_PAD_H

#include "broadcast.h"

namespace cd {

template <class CFG, class TI, class TO>
void pad(const TI* x, TO* y) {
  const int N = CFG::O[0] * CFG::O[1] * CFG::O[2] * CFG::O[3];
PAD_FILL:
  for (int i = 0; i < N; ++i) y[i] = static_cast<TO>(CFG::ZP);
  int i = 0;
PAD_COPY:
  CD_FOR_EACH4(CFG::D) {
#pragma HLS PIPELINE II = 1
    const int o = (((i0 + CFG::B[0]) * CFG::O[1] + i1 + CFG::B[1]) * CFG::O[2] + i2 +
                   CFG::B[2]) * CFG::O[3] + i3 + CFG::B[3];
    y[o] = static_cast<TO>(x[i]);
  }
}

}  // namespace cd

#endif
