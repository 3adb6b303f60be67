"""The x86 parts of the C preamble: AVX, AVX2, AVX-512, VNNI intrinsics for the hooks of
``isa_generic`` (each block is the ``#if`` / ``#elif`` part; the generic C follows its
``#else``).  Generated x86 code is exactly what it was before the ISA split.

``<immintrin.h>`` takes GCC a third of a second to parse, several times what a small kernel
costs, and most kernels call no helper that needs it: the header and every branch that calls
what it declares are compiled only where the file defines ``EMBER_INTRINSICS`` (before it
includes the preamble), which the code generator does for a file that calls one of
:data:`INTRINSIC_HELPERS`.  AVX's max and min are GCC and Clang builtins on the vector type
itself, so they need no header."""

NAME = "x86"

#: the preamble's helpers whose intrinsic branch is compiled only with ``EMBER_INTRINSICS``, by
#: vector width (``EMBER_LANES``): a file calling one of them defines it (see
#: ``codegen.c.intrinsic_helpers``); ``ember_verf`` calls the max and min
_INT8 = ("ember_vround", "ember_vwiden_u8", "ember_vwiden_s8", "ember_low_bytes", "ember_vnarrow_u8",
         "ember_vnarrow_s8", "ember_vdot4", "ember_vdot4_acc", "ember_vdot4_sat16", "ember_vfixed_point_mul")
INTRINSIC_HELPERS = {8: _INT8, 16: (*_INT8, "ember_vmax", "ember_vmin", "ember_verf")}

BLOCKS = {
    "include": """\
#if defined(__AVX__) && defined(EMBER_INTRINSICS)
#include <immintrin.h>
""",
    "maxmin": """\
/* max/min propagating NaN from either side (numpy's semantics).  With AVX or AVX-512: the
   instruction keeps its second operand when either is NaN, so a's NaN survives it and one blend
   adds b's; a reduction's chain through `a` is then two one-cycle instructions instead of five */
#if defined(__AVX__) && EMBER_LANES == 8
#define EMBER_MAXPS(x, y) ((ember_vf)__builtin_ia32_maxps256((x), (y)))
#define EMBER_MINPS(x, y) ((ember_vf)__builtin_ia32_minps256((x), (y)))
#elif defined(__AVX512F__) && EMBER_LANES == 16 && defined(EMBER_INTRINSICS)
#define EMBER_MAXPS(x, y) ((ember_vf)_mm512_max_ps((__m512)(x), (__m512)(y)))
#define EMBER_MINPS(x, y) ((ember_vf)_mm512_min_ps((__m512)(x), (__m512)(y)))
#endif
#ifdef EMBER_MAXPS
static inline ember_vf ember_vmax(ember_vf a, ember_vf b) { return ember_vsel(b != b, b, EMBER_MAXPS(b, a)); }
static inline ember_vf ember_vmin(ember_vf a, ember_vf b) { return ember_vsel(b != b, b, EMBER_MINPS(b, a)); }
""",
    "no_contract": """\
#if defined(__x86_64__) || defined(__i386__)
#define EMBER_NO_CONTRACT(v) ({ __auto_type _nc = (v); __asm__("" : "+x"(_nc)); _nc; })
#elif defined(__aarch64__)
#define EMBER_NO_CONTRACT(v) ({ __auto_type _nc = (v); __asm__("" : "+w"(_nc)); _nc; })
""",
    "vround": """\
#if defined(__AVX__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  return (ember_vf)_mm256_round_ps((__m256)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(__AVX512F__) && EMBER_LANES == 16 && defined(EMBER_INTRINSICS)
  return (ember_vf)_mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
""",
    "widen_narrow": """\
#if defined(__AVX2__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
static inline ember_vi ember_vwiden_u8(ember_vu8 v) {
  long long b; memcpy(&b, &v, 8); return (ember_vi)_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(b));
}
static inline ember_vi ember_vwiden_s8(ember_vs8 v) {
  long long b; memcpy(&b, &v, 8); return (ember_vi)_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(b));
}
static inline long long ember_low_bytes(ember_vi v) {
  __m256i t = _mm256_shuffle_epi8((__m256i)v, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                               -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  return _mm_cvtsi128_si64(_mm_unpacklo_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
}
static inline ember_vu8 ember_vnarrow_u8(ember_vi v) { long long b = ember_low_bytes(v); ember_vu8 o; memcpy(&o, &b, 8); return o; }
static inline ember_vs8 ember_vnarrow_s8(ember_vi v) { long long b = ember_low_bytes(v); ember_vs8 o; memcpy(&o, &b, 8); return o; }
""",
    "vdot4": """\
#if defined(__AVX512VNNI__) && EMBER_LANES == 16 && defined(EMBER_INTRINSICS)
  return (ember_vi)_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi32((int)x), _mm512_loadu_si512((const void*)w));
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  return (ember_vi)_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi32((int)x), _mm256_loadu_si256((const __m256i*)w));
#elif defined(__AVXVNNI__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  return (ember_vi)_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi32((int)x), _mm256_loadu_si256((const __m256i*)w));
""",
    "vdot4_acc": """\
#if defined(__AVX512VNNI__) && EMBER_LANES == 16 && defined(EMBER_INTRINSICS)
  return (ember_vi)_mm512_dpbusd_epi32((__m512i)acc, _mm512_set1_epi32((int)x), _mm512_loadu_si512((const void*)w));
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  return (ember_vi)_mm256_dpbusd_epi32((__m256i)acc, _mm256_set1_epi32((int)x), _mm256_loadu_si256((const __m256i*)w));
#elif defined(__AVXVNNI__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  return (ember_vi)_mm256_dpbusd_avx_epi32((__m256i)acc, _mm256_set1_epi32((int)x), _mm256_loadu_si256((const __m256i*)w));
""",
    "vdot4_sat16": """\
#if defined(__AVX2__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  __m256i p = _mm256_maddubs_epi16(_mm256_set1_epi32((int)x), _mm256_loadu_si256((const __m256i*)w));
  return (ember_vi)_mm256_madd_epi16(p, _mm256_set1_epi16(1));
#elif defined(__AVX512BW__) && EMBER_LANES == 16 && defined(EMBER_INTRINSICS)
  __m512i p = _mm512_maddubs_epi16(_mm512_set1_epi32((int)x), _mm512_loadu_si512((const void*)w));
  return (ember_vi)_mm512_madd_epi16(p, _mm512_set1_epi16(1));
""",
    "vfixed_point_mul": """\
#if defined(__AVX2__) && EMBER_LANES == 8 && defined(EMBER_INTRINSICS)
  const __m256i zero = _mm256_setzero_si256(), c31 = _mm256_set1_epi32(31), ones = _mm256_set1_epi32(-1);
  const __m256i max32 = _mm256_set1_epi32(INT32_MAX), min32 = _mm256_set1_epi32(INT32_MIN);
  __m256i xv = (__m256i)x, mv = (__m256i)m;
  __m256i left = _mm256_min_epi32(_mm256_max_epi32((__m256i)s, zero), c31);
  __m256i right = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(zero, (__m256i)s), zero), c31);
  /* x 2^left saturated: where shifting back does not give x, the bound of x's sign */
  __m256i xs = _mm256_sllv_epi32(xv, left);
  __m256i ovf = _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_srav_epi32(xs, left), xv), ones);
  xs = _mm256_blendv_epi8(xs, _mm256_xor_si256(_mm256_srai_epi32(xv, 31), max32), ovf);
  /* the 64-bit products of the even lanes and of the odd lanes (vpmuldq), + 2^30; bits 31..62
     of each are floor((x m + 2^30) / 2^31), the high half rounded half away from zero */
  const __m256i nudge = _mm256_set1_epi64x(INT64_C(1) << 30);
  __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(xs, mv), nudge);
  __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(mv, 32)), nudge);
  __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
  __m256i sat = _mm256_and_si256(_mm256_cmpeq_epi32(xs, min32), _mm256_cmpeq_epi32(mv, min32));
  h = _mm256_blendv_epi8(h, max32, sat);
  /* divided by 2^right rounding half away from zero */
  __m256i mask = _mm256_xor_si256(_mm256_sllv_epi32(ones, right), ones);
  __m256i threshold = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_srai_epi32(h, 31));
  __m256i up = _mm256_cmpgt_epi32(_mm256_and_si256(h, mask), threshold);
  return (ember_vi)_mm256_sub_epi32(_mm256_srav_epi32(h, right), up);
""",
}
