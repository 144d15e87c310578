// Index arithmetic for numpy-style broadcasting over four per-sample dimensions.
#ifndef CONVDEPLOY_BROADCAST_H
#define CONVDEPLOY_BROADCAST_H

namespace cd {

template <const int* S>
inline int offset(int i0, int i1, int i2, int i3) {
  return i0 * S[0] + i1 * S[1] + i2 * S[2] + i3 * S[3];
}

}  // namespace cd

// Every index of four per-sample dimensions D, in order, with a running flat index i.
#define CD_FOR_EACH4(D)                        \
  for (int i0 = 0; i0 < D[0]; ++i0)            \
    for (int i1 = 0; i1 < D[1]; ++i1)          \
      for (int i2 = 0; i2 < D[2]; ++i2)        \
        for (int i3 = 0; i3 < D[3]; ++i3, ++i)

#endif
