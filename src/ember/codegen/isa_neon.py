"""The ARM NEON parts of the C preamble (AArch64, and 32-bit ARMv7 with NEON), for the hooks of
``isa_generic``: each block is the ``#if`` / ``#elif`` part, the generic C follows its ``#else``.
Vectors of 4 floats (``EMBER_LANES == 4``), the only width NEON has."""

NAME = "neon"

BLOCKS = {
    "include": """\
#if defined(__ARM_NEON)
#include <arm_neon.h>
""",
    # FMAX/FMIN (and ARMv7's VMAX/VMIN) return NaN when either operand is NaN: numpy's semantics
    "maxmin": """\
#if defined(__ARM_NEON) && EMBER_LANES == 4
static inline ember_vf ember_vmax(ember_vf a, ember_vf b) { return (ember_vf)vmaxq_f32((float32x4_t)a, (float32x4_t)b); }
static inline ember_vf ember_vmin(ember_vf a, ember_vf b) { return (ember_vf)vminq_f32((float32x4_t)a, (float32x4_t)b); }
""",
    # a register operand ("w": a SIMD/FP register) keeps the value rounded where it is computed
    "no_contract": """\
#if defined(__aarch64__)
#define EMBER_NO_CONTRACT(v) ({ __auto_type _nc = (v); __asm__("" : "+w"(_nc)); _nc; })
#elif defined(__arm__)
#define EMBER_NO_CONTRACT(v) ({ __auto_type _nc = (v); __asm__("" : "+m"(_nc)); _nc; })
""",
    # FRINTN: round to nearest, ties to even (AArch64 only; ARMv7 NEON has no rounding)
    "vround": """\
#if defined(__aarch64__) && EMBER_LANES == 4
  return (ember_vf)vrndnq_f32((float32x4_t)x);
""",
    # uint8 x int8 dot products of four: USDOT with i8mm; with dotprod only, SDOT on the uint8
    # operand moved to int8 (x - 128, by flipping the top bit) plus 128 times the sum of the
    # weights (a second SDOT with ones): x.w = (x - 128).w + 128 (1.w), exact in int32
    "vdot4": """\
#if defined(__ARM_FEATURE_MATMUL_INT8) && defined(__aarch64__) && EMBER_LANES == 4
  return (ember_vi)vusdotq_s32(vdupq_n_s32(0), vreinterpretq_u8_u32(vdupq_n_u32(x)), vld1q_s8(w));
#elif defined(__ARM_FEATURE_DOTPROD) && defined(__aarch64__) && EMBER_LANES == 4
  int8x16_t wv = vld1q_s8(w);
  int32x4_t d = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u32(vdupq_n_u32(x ^ 0x80808080u)), wv);
  int32x4_t s = vdotq_s32(vdupq_n_s32(0), vdupq_n_s8(1), wv);
  return (ember_vi)vaddq_s32(d, vshlq_n_s32(s, 7));
""",
}
