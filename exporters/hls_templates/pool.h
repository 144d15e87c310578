// MAX_POOL_2D (padded positions never win; the fused activation's clamp after) and
// AVERAGE_POOL_2D (TFLite's int8 kernel: the sum of the int8 codes in the window, padding not
// counted, divided by the count rounding half away from zero; uint8 codes shifted by 128
// first, CFG::SHIFT). NCHW, one sample.
#ifndef CONVDEPLOY_POOL_H
#define CONVDEPLOY_POOL_H

#include "fixed_point.h"

namespace cd {

template <class CFG, class TI, class TO>
void max_pool(const TI* x, TO* y) {
POOL_C:
  for (int c = 0; c < CFG::C; ++c)
    for (int oh = 0; oh < CFG::HO; ++oh)
      for (int ow = 0; ow < CFG::WO; ++ow) {
#pragma HLS PIPELINE II = 1
        int32_t best = INT32_MIN;
        for (int kh = 0; kh < CFG::KH; ++kh)
          for (int kw = 0; kw < CFG::KW; ++kw) {
            const int ih = oh * CFG::SH - CFG::PT + kh;
            const int iw = ow * CFG::SW - CFG::PL + kw;
            if (ih < 0 || ih >= CFG::HI || iw < 0 || iw >= CFG::WI) continue;
            const int32_t v = static_cast<int32_t>(x[(c * CFG::HI + ih) * CFG::WI + iw]);
            best = v > best ? v : best;
          }
        y[(c * CFG::HO + oh) * CFG::WO + ow] = static_cast<TO>(clamp(best, CFG::LOW, CFG::HIGH));
      }
}

template <class CFG, class TI, class TO>
void average_pool(const TI* x, TO* y) {
POOL_C:
  for (int c = 0; c < CFG::C; ++c)
    for (int oh = 0; oh < CFG::HO; ++oh)
      for (int ow = 0; ow < CFG::WO; ++ow) {
#pragma HLS PIPELINE II = 1
        int32_t total = 0, count = 0;
        for (int kh = 0; kh < CFG::KH; ++kh)
          for (int kw = 0; kw < CFG::KW; ++kw) {
            const int ih = oh * CFG::SH - CFG::PT + kh;
            const int iw = ow * CFG::SW - CFG::PL + kw;
            if (ih < 0 || ih >= CFG::HI || iw < 0 || iw >= CFG::WI) continue;
            total += static_cast<int32_t>(x[(c * CFG::HI + ih) * CFG::WI + iw]) - CFG::SHIFT;
            ++count;
          }
        const int32_t half = count / 2;
        const int32_t avg = total > 0 ? (total + half) / count : -((-total + half) / count);
        y[(c * CFG::HO + oh) * CFG::WO + ow] =
            static_cast<TO>(clamp(avg + CFG::SHIFT, CFG::LOW, CFG::HIGH));
      }
}

}  // namespace cd

#endif
