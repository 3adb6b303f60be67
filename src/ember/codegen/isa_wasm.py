"""The WebAssembly SIMD128 parts of the C preamble, for the hooks of ``isa_generic``: each block
is the ``#if`` / ``#elif`` part, the generic C follows its ``#else``.  Vectors of 4 floats."""

NAME = "wasm"

BLOCKS = {
    "include": """\
#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
""",
    # f32x4.max / f32x4.min return NaN when either operand is NaN: numpy's semantics
    "maxmin": """\
#if defined(__wasm_simd128__) && EMBER_LANES == 4
static inline ember_vf ember_vmax(ember_vf a, ember_vf b) { return (ember_vf)wasm_f32x4_max((v128_t)a, (v128_t)b); }
static inline ember_vf ember_vmin(ember_vf a, ember_vf b) { return (ember_vf)wasm_f32x4_min((v128_t)a, (v128_t)b); }
""",
    # f32x4.nearest: round to nearest, ties to even
    "vround": """\
#if defined(__wasm_simd128__) && EMBER_LANES == 4
  return (ember_vf)wasm_f32x4_nearest((v128_t)x);
""",
    # (WebAssembly has no fused multiply-add outside relaxed SIMD, which is not enabled: the
    # generic EMBER_NO_CONTRACT, the value itself, is exact here)
}
