"""Compile every Triton kernel of ``targets.triton_kernels`` for an NVIDIA GPU architecture
with Triton's own compiler (to PTX; no GPU needed), with the pointer types and compile-time
constants the GPU target launches them with."""
from __future__ import annotations

import inspect

_WEIGHTED = dict(w_ptr="*i8", b_ptr="*i32", m_ptr="*i64", l_ptr="*i32", r_ptr="*i64",
                 n_ptr="*i64", y_ptr="*i8")
CASES = [
    ("_conv_gemm_kernel", dict(x_ptr="*i8", **_WEIGHTED),
     dict(KW=3, SINGLE=False, BM=64, BN=64, BK=32)),
    ("_conv_gemm_kernel", dict(x_ptr="*i8", **_WEIGHTED),
     dict(KW=1, SINGLE=True, BM=64, BN=32, BK=32)),
    ("_conv_im2win_kernel", dict(win_ptr="*i8", **_WEIGHTED),
     dict(KHC=48, SINGLE=False, BM=64, BN=64, BK=32)),
    ("_im2win_kernel", dict(x_ptr="*i8", win_ptr="*i8"), dict(KH=3, BLOCK=1024)),
    ("_depthwise_kernel", dict(x_ptr="*i8", **_WEIGHTED),
     dict(KH=3, KW=3, SINGLE=False, BP=64, BC=32)),
    ("_add_kernel", dict(a_ptr="*i8", b_ptr="*i8", y_ptr="*i8"),
     dict(LEFT=20, SINGLE=False, BLOCK=1024)),
    ("_mul_kernel", dict(a_ptr="*i8", b_ptr="*i8", y_ptr="*i8"),
     dict(HAS_B=True, SINGLE=True, BLOCK=1024)),
    ("_mean_kernel", dict(x_ptr="*i8", y_ptr="*i8"), dict(SINGLE=False, BP=64, BC=32)),
    ("_pool_kernel", dict(x_ptr="*i8", y_ptr="*i8"),
     dict(KH=3, KW=3, AVERAGE=True, BP=64, BC=32)),
]


def compile_all(capability: int = 90) -> dict[str, str]:
    """Kernel name -> PTX of its (last) compiled case."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from convdeploy.targets import triton_kernels as tk

    ptx = {}
    for name, pointers, constants in CASES:
        kernel = getattr(tk, name)
        fn = getattr(kernel, "fn", kernel)
        signature = {arg: "constexpr" if arg in constants else pointers.get(arg, "i32")
                     for arg in inspect.signature(fn).parameters}
        src = ASTSource(fn=kernel, signature=signature, constexprs=constants)
        ptx[name] = triton.compile(src, target=GPUTarget("cuda", capability, 32)).asm["ptx"]
    return ptx


def main() -> None:
    """Print, as JSON, each kernel's PTX facts (run in a process without TRITON_INTERPRET:
    Triton fixes at import whether kernels are compiled or interpreted)."""
    import json
    import sys

    ptx = compile_all(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
    print(json.dumps({name: {"int8_mma": "mma" in text and ".s8" in text, "bytes": len(text)}
                      for name, text in ptx.items()}))


if __name__ == "__main__":
    main()
