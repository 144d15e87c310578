// CONV_2D (dense and grouped) of the numerics contract: int32 accumulators (bias first, then
// (x - zp_in) * w; padded positions hold the zero point and add nothing), per-output-channel
// requantization, the fused activation's clamp. Layout NCHW (one sample), weights OIHW.
//
// Loop order: weight-stationary plane accumulation (one output channel's plane of accumulators,
// each weight applied to every output pixel it touches). The innermost loop runs along a row
// (contiguous for stride 1), which both pipelines in HLS and vectorises in C-simulation.
// CFG (generated per layer) carries shapes, zero points, clamp and the folding: MULTIPLIERS
// (ceil(K*K*Cin*Cout / REUSE), hls4ml's model) bounds the multiplier instances.
#ifndef CONVDEPLOY_CONV_H
#define CONVDEPLOY_CONV_H

#include "fixed_point.h"
#include "types.h"

namespace cd {

template <class CFG, class TI, class W>
void accumulate_plane(const TI* x, uint32_t acc[CFG::HO * CFG::WO], W w, int oc) {
  const int CIG = CFG::CI / CFG::G;
  const int COG = CFG::CO / CFG::G;
  const int g = oc / COG;
ACC_IC:
  for (int ic = 0; ic < CIG; ++ic) {
    const TI* xc = x + (g * CIG + ic) * CFG::HI * CFG::WI;
    for (int kh = 0; kh < CFG::KH; ++kh) {
      for (int kw = 0; kw < CFG::KW; ++kw) {
        const int32_t wv = w[((oc * CIG + ic) * CFG::KH + kh) * CFG::KW + kw];
        if (wv == 0) continue;  // adds nothing (pruned or rounded-to-zero weights)
        const int off = kw * CFG::DW - CFG::PL;  // iw = ow * SW + off
        int lo = off < 0 ? (-off + CFG::SW - 1) / CFG::SW : 0;
        int hi = (CFG::WI - 1 - off) >= 0 ? (CFG::WI - 1 - off) / CFG::SW + 1 : 0;
        if (hi > CFG::WO) hi = CFG::WO;
        for (int oh = 0; oh < CFG::HO; ++oh) {
          const int ih = oh * CFG::SH - CFG::PT + kh * CFG::DH;
          if (ih < 0 || ih >= CFG::HI) continue;
          const TI* row = xc + ih * CFG::WI + off;
          uint32_t* a = acc + oh * CFG::WO;
        ACC_ROW:
          for (int ow = lo; ow < hi; ++ow) {
#pragma HLS PIPELINE II = 1
            a[ow] += static_cast<uint32_t>(wv * (static_cast<int32_t>(row[ow * CFG::SW]) -
                                                 CFG::ZP_IN));
          }
        }
      }
    }
  }
}

template <class CFG, class TI, class TO, class W>
void conv2d(const TI* x, TO* y, W w, const bias_t* bias, const int32_t* multiplier,
            const int8_t* shift) {
#pragma HLS ALLOCATION operation instances = mul limit = CFG::MULTIPLIERS
  const int P = CFG::HO * CFG::WO;
CONV_OC:
  for (int oc = 0; oc < CFG::CO; ++oc) {
    uint32_t acc[CFG::HO * CFG::WO];
    const uint32_t b = CFG::HAS_BIAS ? static_cast<uint32_t>(bias[oc]) : 0u;
    for (int p = 0; p < P; ++p) acc[p] = b;
    accumulate_plane<CFG>(x, acc, w, oc);
    TO* out = y + oc * P;
  CONV_REQUANT:
    for (int p = 0; p < P; ++p) {
#pragma HLS PIPELINE II = 1
      const int64_t v = multiply_by_quantized_multiplier<CFG::ROUNDING>(
                            wrap32(acc[p]), multiplier[oc], shift[oc]) + CFG::ZP_OUT;
      out[p] = static_cast<TO>(clamp(v, CFG::LOW, CFG::HIGH));
    }
  }
}

}  // namespace cd

#endif
