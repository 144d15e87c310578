// DEPTHWISE_CONV_2D: output channel oc reads input channel oc / MULT (TFLite's depth
// multiplier); the arithmetic is CONV_2D's (conv.h) with one input channel per group.
#ifndef CONVDEPLOY_DEPTHWISE_H
#define CONVDEPLOY_DEPTHWISE_H

#include "conv.h"

namespace cd {

template <class CFG, class TI, class TO, class W>
void depthwise_conv2d(const TI* x, TO* y, W w, const bias_t* bias, const int32_t* multiplier,
                      const int8_t* shift) {
  static_assert(CFG::G == CFG::CI, "a depthwise convolution has one group per input channel");
  static_assert(CFG::CO % CFG::CI == 0, "output channels are a multiple of input channels");
  conv2d<CFG>(x, y, w, bias, multiplier, shift);
}

}  // namespace cd

#endif
