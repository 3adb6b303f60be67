"""The generic C of every hook of the C preamble: GCC/Clang vector extensions and plain C
only, so that code for any target compiles.  An ISA module (``isa_x86``, ``isa_neon``,
``isa_wasm``, ``isa_riscv``) gives, per hook, an ``#if`` / ``#elif`` block of intrinsics; the
preamble writes it, then ``#else``, this text and ``#endif`` (:func:`hook`), so the generic C is
the fallback of every intrinsic, and a target whose ISA module has no block for a hook gets
only this text."""

from __future__ import annotations

NAME = "generic"

#: the hooks, in the order the preamble writes them
HOOKS = ('include', 'maxmin', 'no_contract', 'vround', 'widen_narrow', 'vdot4', 'vdot4_acc', 'vdot4_sat16',
         'vfixed_point_mul')

GENERIC = {
    "include": "",
    "maxmin": """\
static inline ember_vf ember_vmax(ember_vf a, ember_vf b) { return ember_vsel((a > b) | (a != a), a, b); }
static inline ember_vf ember_vmin(ember_vf a, ember_vf b) { return ember_vsel((a < b) | (a != a), a, b); }
""",
    "no_contract": """\
#define EMBER_NO_CONTRACT(v) (v)
""",
    "vround": """\
  ember_vf ax = ember_vsel(x < 0.0f, -x, x);
  ember_vf r = (ax + 8388608.0f) - 8388608.0f;
  r = ember_vsel(x < 0.0f, -r, r);
  return ember_vsel(ax < 8388608.0f, r, x);
""",
    "widen_narrow": """\
static inline ember_vi ember_vwiden_u8(ember_vu8 v) { return __builtin_convertvector(v, ember_vi); }
static inline ember_vi ember_vwiden_s8(ember_vs8 v) { return __builtin_convertvector(v, ember_vi); }
static inline ember_vu8 ember_vnarrow_u8(ember_vi v) { return __builtin_convertvector(v, ember_vu8); }
static inline ember_vs8 ember_vnarrow_s8(ember_vi v) { return __builtin_convertvector(v, ember_vs8); }
""",
    "vdot4": """\
  ember_vi r;
  for (int i = 0; i < EMBER_LANES; ++i)
    r[i] = ember_dot4(x & 255, (x >> 8) & 255, (x >> 16) & 255, x >> 24, w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
  return r;
""",
    "vdot4_acc": """\
  return acc + ember_vdot4(x, w);
""",
    "vdot4_sat16": """\
  ember_vi r;
  for (int i = 0; i < EMBER_LANES; ++i)
    r[i] = ember_dot4_sat16(x & 255, (x >> 8) & 255, (x >> 16) & 255, x >> 24, w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
  return r;
""",
    "vfixed_point_mul": """\
  typedef int64_t vl __attribute__((vector_size(2 * sizeof(ember_vi))));
  const ember_vi zero = {0}, c31 = zero + 31;
  ember_vi left = ember_vmini(ember_vmaxi(s, zero), c31), right = ember_vmini(ember_vmaxi(zero - s, zero), c31);
  const vl hi = (vl){0} + INT32_MAX, lo = (vl){0} + INT32_MIN;
  vl xl = __builtin_convertvector(x, vl) << __builtin_convertvector(left, vl), t;
  t = xl > hi; xl = (xl & ~t) | (hi & t);
  t = xl < lo; xl = (xl & ~t) | (lo & t);
  vl h = (xl * __builtin_convertvector(m, vl) + (INT64_C(1) << 30)) >> 31;
  t = h > hi; h = (h & ~t) | (hi & t);
  ember_vi r = __builtin_convertvector(h, ember_vi);
  ember_vi mask = ~((zero - 1) << right), threshold = (mask >> 1) - (r >> 31);
  return (r >> right) - ((r & mask) > threshold);
""",
}

BLOCKS: dict[str, str] = {}


def hook(isa, name: str) -> str:
    """The preamble's text for hook ``name`` with the ISA module ``isa``: its block, then the
    generic C as the ``#else`` branch; the generic C alone where it has no block."""
    generic = GENERIC[name]
    block = getattr(isa, "BLOCKS", {}).get(name)
    if not block:
        return generic
    if not generic:              # a block with no fallback to give (an #include)
        return block + "#endif\n"
    return block + "#else\n" + generic + "#endif\n"

