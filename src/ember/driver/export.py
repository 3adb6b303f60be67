"""``ember export --format c``: a model as a C source package that builds with no Ember present.

The package holds what :func:`ember.driver.compile.generate` makes of the model (the kernels and
the model's entry, ``model.c``), the runtime's C files (``runtime/``), the weights, a header
(``model.h``: the signature, over ``runtime/ember_runtime.h``, the C API), the runner
``run_model.c`` built linked with the model (``-DEMBER_LINKED``), a ``Makefile`` and a README.
``make`` builds ``libmodel.a`` and ``run_model`` with ``$(CC)``: the host's ``cc``, a cross
compiler (``make CC="zig cc -target aarch64-linux-gnu"``) or the board's own.

The weights are ``weights.bin`` with ``weights.S``, which includes it with the assembler's
``.incbin`` (ELF and WebAssembly objects; GCC, Clang and zig cc), or with ``weights="array"`` a C
array in ``weights.c`` for compilers without it (slower to compile for large models).

The kernels are those of ``target``: :func:`ember.target.portable` by default (generic C with
GCC/Clang vector extensions, for any processor), or a named target's (NEON, wasm SIMD, ...),
whose package then builds only for that target.  The package is written to a temporary folder
and renamed into place, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import ArtifactError, TargetError
from ..target import Target, portable, resolve

#: the marker file of a package: a folder that holds it may be replaced by a new export
MARKER = ".ember-export"
#: compile flags every build of the package needs (those of ``toolchain.cc.DEFAULT_CFLAGS`` that
#: change what the code means, not how fast it is)
PACKAGE_CFLAGS = ("-std=gnu11", "-fwrapv", "-ffp-contract=fast", "-fno-math-errno", "-fvisibility=hidden")
#: the processor check of a portable package: no extension is required
NO_FEATURES = """\
/* ember_cpu_features.h: the kernels are generic C, so they need no instruction-set extension. */
#define EMBER_CPU_BUILTIN(X)
#define EMBER_CPU_CPUID(X)
#define EMBER_CPU_HWCAP(X)
#define EMBER_CPU_UNKNOWN ""
"""


def export_c(model: Any, out: str | os.PathLike, *, target: "str | Target" = "portable", opt_level: int = 3,
             shapes: Mapping[str, tuple] | None = None, bounds: Mapping[str, int] | None = None,
             knobs: Mapping[str, Any] | None = None, weights: str = "blob", progress=None) -> Path:
    """Writes the C package of ``model`` for ``target`` into the folder ``out`` (created; an
    existing one must be empty or an earlier export); returns its path."""
    from .compile import generate, to_graph
    from .program import needs_program
    from ..codegen.c import c_ident
    from ..schedules.knobs import check_knobs

    if weights not in ("blob", "array"):
        raise ArtifactError(f"weights are written as 'blob' or 'array', not {weights!r}")
    say = progress or (lambda msg: None)
    tgt = portable() if target == "portable" else resolve(target)
    if knobs:
        tgt = tgt.with_knobs(check_knobs(knobs))
    dest = Path(out)
    _check_destination(dest)
    say("reading model")
    graph = to_graph(model, shapes, bounds)
    if needs_program(graph):
        raise TargetError(f"model '{graph.name}' has host steps (string ops), which only the Python runtime runs: "
                          "it cannot be exported as C")
    cm = generate(graph, tgt, opt_level, progress=say)
    meta = _metadata(cm.source)
    flags, features = _target_flags(tgt)
    files = {
        "model.c": cm.source.encode(),
        "model.h": _header(c_ident(graph.name), meta).encode(),
        "run_model.c": _runner_source(),
        "Makefile": _makefile(flags, weights).encode(),
        "README.md": _readme(graph.name, tgt, meta, weights, len(cm.constants)).encode(),
        "runtime/ember_cpu_features.h": features.encode(),
        MARKER: json.dumps({"name": graph.name, "target": tgt.spec}).encode(),
    }
    from ..toolchain import runtime_files

    files.update({f"runtime/{n}": data for n, data in runtime_files().items()})
    if weights == "blob":
        files["weights.bin"] = bytes(cm.constants)
        files["weights.S"] = WEIGHTS_ASM.encode()
    else:
        files["weights.c"] = _weights_array(bytes(cm.constants))
    say(f"writing {dest}")
    return _write_package(dest, files)


#: the files of a wasm32 web package besides model.wasm (from ``runtime/runners``)
WEB_FILES = ("model.mjs", "index.html")


def export_web(artifact, out: str | os.PathLike) -> Path:
    """Writes the wasm32 ``artifact`` (a :class:`~ember.runtime.cross.CrossArtifact`) as a web
    package into the folder ``out``: ``model.wasm`` (the sealed artifact), ``model.mjs`` (the ES
    module that checks, loads and runs it in a browser or Node.js) and ``index.html`` (an example
    page).  The folder is replaced as by :func:`export_c`."""
    from ..toolchain.emulator import RUNNERS

    if artifact.machine != "wasm32":
        raise TargetError(f"a web package holds a wasm32 artifact, not one for {artifact.target}")
    dest = Path(out)
    _check_destination(dest)
    files = {"model.wasm": artifact.path.read_bytes(),
             MARKER: json.dumps({"name": artifact.name, "target": artifact.target}).encode()}
    files.update({name: (RUNNERS / name).read_bytes() for name in WEB_FILES})
    return _write_package(dest, files)


def _check_destination(dest: Path) -> None:
    if dest.exists() and not (dest.is_dir() and (not any(dest.iterdir()) or (dest / MARKER).is_file())):
        raise ArtifactError(f"cannot export to '{dest}': it exists and is not an empty folder or an earlier export")


def _write_package(dest: Path, files: Mapping[str, bytes]) -> Path:
    """Writes ``files`` into a new folder beside ``dest``, then renames it to ``dest`` (an earlier
    export there is replaced only once the new one is complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.chmod(tmp, 0o755)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}-old-", dir=dest.parent))
            os.replace(dest, old / "package")
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _metadata(source: str) -> dict:
    """The model's metadata, from the generated source's ``ember_model_metadata`` string (the
    JSON text as ``codegen.c.c_string`` escapes it)."""
    m = re.search(r'const char ember_model_metadata\[\] = "((?:[^"\\]|\\.)*)";', source)
    if m is None:
        raise ArtifactError("the generated source holds no model metadata")
    return json.loads(re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(1)))


def _target_flags(tgt: Target) -> tuple[list[str], str]:
    """The compile flags the kernels of ``tgt`` need and the text of ``ember_cpu_features.h``."""
    from ..toolchain import cpu_features
    from ..toolchain.cc import CROSS_CFLAGS, DEFAULT_CFLAGS, cross_compiler, find_compiler

    if tgt.isa == "generic" and not tgt.cross and tgt.arch == "generic":
        return [], NO_FEATURES
    if tgt.cross:
        return list(tgt.cflags), cpu_features.header(cross_compiler(tgt).command, [*CROSS_CFLAGS, *tgt.cflags])
    return ["-march=native"], cpu_features.header(find_compiler().command, list(DEFAULT_CFLAGS))


def _runner_source() -> bytes:
    from ..toolchain.emulator import RUN_MODEL_C

    return RUN_MODEL_C.read_bytes()


def _header(ident: str, meta: dict) -> str:
    def sig(entries) -> str:
        return "\n".join(f" *   {i}: {x['name']} {x['dtype']}[{', '.join(map(str, x['shape']))}]"
                         for i, x in enumerate(entries))

    guard = f"EMBER_MODEL_{ident.upper()}_H"
    return f"""/* model.h: the model '{meta.get('name', ident)}' compiled by Ember; its C API is that of
 * runtime/ember_runtime.h (ember_model_create, ember_model_run, ...).
 *
 * inputs (buffers in this order, dense, row-major):
{sig(meta['inputs'])}
 * outputs:
{sig(meta['outputs'])}
 */
#ifndef {guard}
#define {guard}

#include "runtime/ember_runtime.h"

#define EMBER_MODEL_NUM_INPUTS {len(meta['inputs'])}
#define EMBER_MODEL_NUM_OUTPUTS {len(meta['outputs'])}

#endif
"""


#: weights.bin as the read-only, 64-byte aligned symbol ember_constants (GNU assembler syntax:
#: ELF on every architecture, "%" type prefixes for ARM where "@" starts a comment; WebAssembly)
WEIGHTS_ASM = """\
/* weights.S: the model's weights (weights.bin) as the symbol ember_constants. */
#if defined(__wasm__)
    .section .rodata.ember_constants,"",@
    .globl ember_constants
    .hidden ember_constants
    .type ember_constants, @object
    .p2align 6
ember_constants:
    .incbin "weights.bin"
    .size ember_constants, . - ember_constants
#else
    .section .rodata
    .globl ember_constants
    .hidden ember_constants
    .type ember_constants, %object
    .balign 64
ember_constants:
    .incbin "weights.bin"
    .size ember_constants, . - ember_constants
    .section .note.GNU-stack,"",%progbits
#endif
"""


def _weights_array(data: bytes) -> bytes:
    lines = [b"/* weights.c: the model's weights as the array ember_constants. */",
             b"__attribute__((aligned(64), visibility(\"hidden\")))",
             f"const unsigned char ember_constants[{max(1, len(data))}] = {{".encode()]
    for k in range(0, len(data), 32):
        lines.append(b",".join(str(b).encode() for b in data[k:k + 32]) + b",")
    if not data:
        lines.append(b"0")
    lines.append(b"};\n")
    return b"\n".join(lines)


def _makefile(flags: list[str], weights: str) -> str:
    weights_src = "weights.S weights.bin" if weights == "blob" else "weights.c"
    return f"""# Builds the model with any C compiler: `make`, `make CC=clang`, or a cross compiler,
# e.g. `make CC="zig cc -target aarch64-linux-gnu"`.  CFLAGS tune the build (default -O2);
# EMBER_CFLAGS are what the code needs (keep them).  Outputs: libmodel.a and run_model.
CC ?= cc
AR ?= ar
CFLAGS ?= -O2
EMBER_CFLAGS = {' '.join(PACKAGE_CFLAGS)} {' '.join(flags)} -DEMBER_NO_DEFAULT_CONSTANTS -Iruntime
THREADS ?= -pthread
LDLIBS ?= -lm

OBJS = model.o runtime/runtime.o runtime/threadpool.o runtime/blocks.o weights.o

all: libmodel.a run_model

%.o: %.c runtime/ember_kernel.h runtime/ember_runtime.h runtime/ember_cpu_features.h
\t$(CC) $(CFLAGS) $(EMBER_CFLAGS) $(THREADS) -c $< -o $@

weights.o: {weights_src}
\t$(CC) $(CFLAGS) $(EMBER_CFLAGS) -c {weights_src.split()[0]} -o $@

libmodel.a: $(OBJS)
\trm -f $@
\t$(AR) rcs $@ $(OBJS)

run_model: run_model.c libmodel.a
\t$(CC) $(CFLAGS) $(EMBER_CFLAGS) $(THREADS) -DEMBER_LINKED run_model.c libmodel.a -o $@ $(THREADS) $(LDLIBS)

clean:
\trm -f $(OBJS) libmodel.a run_model

.PHONY: all clean
"""


def _readme(name: str, tgt: Target, meta: dict, weights: str, nbytes: int) -> str:
    kernels = ("generic C (GCC/Clang vector extensions): any processor" if tgt.arch == "generic"
               else f"for {tgt.spec} ({tgt.isa} intrinsics): only that target")
    store = ("`weights.bin`, included by `weights.S` (`.incbin`)" if weights == "blob"
             else "the C array of `weights.c`")
    return f"""# {name}: a C package exported by Ember

Kernels: {kernels}.  Weights: {store}, {nbytes:,} bytes.

    make                                          # libmodel.a and run_model, with cc
    make CC="zig cc -target aarch64-linux-gnu"    # a cross build (or any cross gcc)
    ./run_model [--threads N] [--iters N] [--out PREFIX] [INPUT.bin ...]

`run_model` reads one raw file per input (exactly its bytes, in the order of `model.h`), or fills
the inputs with a deterministic pattern; it prints the first values of each output, a checksum
and the latency, and with `--out` writes output i to `PREFIX<i>.bin`.

Your program includes `model.h` and links `libmodel.a` with `-pthread -lm`; the C API is
`runtime/ember_runtime.h`:

    ember_model* m = ember_model_create();
    if (ember_model_run(m, inputs, outputs) != 0) fprintf(stderr, "%s\\n", ember_last_error());
    ember_model_destroy(m);

WebAssembly (WASI, one thread): `make CC="zig cc -target wasm32-wasi" THREADS= \\
CFLAGS="-O2 -msimd128 -D_WASI_EMULATED_MMAN" LDLIBS="-lm -lwasi-emulated-mman"`.
"""
