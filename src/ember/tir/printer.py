"""A readable text form of loop-IR kernels, for dumps and tests."""

from __future__ import annotations

from .stmt import Allocate, Barrier, For, IfThenElse, PrimFunc, Seq, Stmt, Store


def print_stmt(s: Stmt, ind: str = "") -> str:
    if isinstance(s, Seq):
        return "".join(print_stmt(x, ind) for x in s.stmts)
    if isinstance(s, For):
        kind = "" if s.kind == "serial" else f" {s.kind}"
        return f"{ind}for{kind} {s.var!r} in 0..{s.extent}:\n" + print_stmt(s.body, ind + "  ")
    if isinstance(s, Store):
        return f"{ind}{s.buffer.name}[{s.index!r}] = {s.value!r}\n"
    if isinstance(s, Allocate):
        b = s.buffer
        return f"{ind}{b.scope} {b.name}: {b.dtype}[{b.size}]\n" + print_stmt(s.body, ind)
    if isinstance(s, IfThenElse):
        out = f"{ind}if {s.cond!r}:\n" + print_stmt(s.then, ind + "  ")
        if s.other is not None:
            out += f"{ind}else:\n" + print_stmt(s.other, ind + "  ")
        return out
    if isinstance(s, Barrier):
        return f"{ind}barrier\n"
    return f"{ind}{s!r}\n"


def print_func(f: PrimFunc) -> str:
    params = ", ".join(f"{'const ' if b.const else ''}{b.name}: {b.dtype}[{b.size}]" for b in f.params)
    head = f"# {f.comment}\n" if f.comment else ""
    sched = "".join(f"# schedule: {line}\n" for line in f.attrs.get("schedule", "").splitlines())
    if f.attrs.get("schedule_fallback"):
        sched += f"# schedule fallback: {f.attrs['schedule_fallback']}\n"
    if f.attrs.get("schedule_replay"):
        sched += f"# schedule: {f.attrs['schedule_replay']}\n"
    return f"{head}{sched}kernel {f.name}({params}):\n" + print_stmt(f.body, "  ")
