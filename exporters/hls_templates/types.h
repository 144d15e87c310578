// convdeploy HLS types: activation codes, weights, accumulators.
// C-simulation uses native integer types (fast, exact); under __SYNTHESIS__ (Vitis HLS) or with
// -DCONVDEPLOY_AP_TYPES the codes become ap_int<N>/ap_uint<N> of their exact width. Kernels
// compute in int32/int64 either way, so the two builds give the same bits.
#ifndef CONVDEPLOY_TYPES_H
#define CONVDEPLOY_TYPES_H

#include <cstdint>

#if defined(__SYNTHESIS__) || defined(CONVDEPLOY_AP_TYPES)
#include "ap_int.h"
namespace cd {
template <int BITS, bool SIGNED> struct code { typedef ap_int<BITS> type; };
template <int BITS> struct code<BITS, false> { typedef ap_uint<BITS> type; };
}  // namespace cd
#else
namespace cd {
template <int BITS, bool SIGNED> struct code;  // the narrowest native type holding BITS
template <> struct code<4, true> { typedef int8_t type; };
template <> struct code<4, false> { typedef uint8_t type; };
template <> struct code<8, true> { typedef int8_t type; };
template <> struct code<8, false> { typedef uint8_t type; };
template <> struct code<16, true> { typedef int16_t type; };
template <> struct code<16, false> { typedef uint16_t type; };
}  // namespace cd
#endif

namespace cd {

// Weights are held as int8_t in C-simulation (g++ compiles large int8_t arrays quickly; an
// ap_int<8> initializer of 16k elements took 15 s). 4-bit layers also carry a packed copy (two
// nibbles per byte), which synthesis (or -DCONVDEPLOY_PACKED_WEIGHTS) reads through w4().
typedef int8_t weight_t;
typedef int32_t bias_t;

inline int32_t w4(const uint8_t* packed, int index) {
  const int byte = packed[index >> 1];
  const int nibble = (index & 1) ? (byte >> 4) : (byte & 15);
  return nibble >= 8 ? nibble - 16 : nibble;  // sign-extend
}

// Weight readers: one int8_t per weight, or two 4-bit weights per byte.
struct weights_i8 {
  const int8_t* data;
  int32_t operator[](int i) const { return data[i]; }
};
struct weights_i4 {
  const uint8_t* packed;
  int32_t operator[](int i) const { return w4(packed, i); }
};

}  // namespace cd

#endif
