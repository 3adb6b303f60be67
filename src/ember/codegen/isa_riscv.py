"""The RISC-V parts of the C preamble, for the hooks of ``isa_generic``.  The vectors are the
generic C ones (the compiler maps them onto RVV when the target has ``+v``, else onto scalar
code); only the barrier against fused multiply-adds needs the ISA: RV64GC has fmadd, and its
vector values have no register constraint, so the value goes through memory."""

NAME = "riscv"

BLOCKS = {
    "no_contract": """\
#if defined(__riscv)
#define EMBER_NO_CONTRACT(v) ({ __auto_type _nc = (v); __asm__("" : "+m"(_nc)); _nc; })
""",
}
