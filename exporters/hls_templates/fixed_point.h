// Requantization of the numerics contract (quant/fixed_point.py), bit for bit: a 32-bit
// fixed-point multiplier and a shift, gemmlowp's rounding doubling high multiply and rounding
// right shift (DOUBLE) or one rounding shift of the 64-bit product (SINGLE). int32 overflow is
// undefined behaviour in C++, so every wrap is explicit (through uint32_t).
#ifndef CONVDEPLOY_FIXED_POINT_H
#define CONVDEPLOY_FIXED_POINT_H

#include <cstdint>

namespace cd {

enum Rounding { DOUBLE = 0, SINGLE = 1 };

inline int32_t wrap32(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

// (a * b + 2^30) >> 31 with gemmlowp's one saturating case; a, b int32 values.
inline int64_t rounding_doubling_high_mul(int64_t a, int64_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (a * b + (int64_t(1) << 30)) >> 31;
}

// Arithmetic right shift rounding half away from zero; x itself for e <= 0.
inline int64_t rounding_divide_by_pot(int64_t x, int e) {
  if (e <= 0) return x;
  return (x + (int64_t(1) << (e - 1)) + (x < 0 ? -1 : 0)) >> e;
}

// round(x * multiplier * 2^(shift - 31)), x an int32 accumulator (wrapped first).
template <int ROUNDING>
inline int64_t multiply_by_quantized_multiplier(int64_t x, int32_t multiplier, int shift) {
  if (ROUNDING == SINGLE) {
    const int total = 31 - shift;
    return (int64_t(wrap32(x)) * multiplier + (int64_t(1) << (total - 1))) >> total;
  }
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const int64_t scaled = x * (int64_t(1) << left);
  return rounding_divide_by_pot(rounding_doubling_high_mul(wrap32(scaled), multiplier), right);
}

inline int32_t clamp(int64_t v, int32_t lo, int32_t hi) {
  return static_cast<int32_t>(v < lo ? lo : (v > hi ? hi : v));
}

}  // namespace cd

#endif
