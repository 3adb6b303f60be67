"""``ember view MODEL -o report.html``: what the compiler made of a model as one self-contained
HTML page (no server, no network: the CSS and the script are inline and ours).

It shows the graph after each pass (one at a time, picked from the list of passes; the lines a
pass added are marked, a pass that changed nothing says so instead of repeating the graph; in
the graph after the last pass every node links to its kernel), the fused groups with each
kernel's loop IR and C, and, given the per-kernel times of ``view.measure``, a bar chart of
them.  The code sits in collapsed sections and a search box filters the kernels and marks the
matching graph lines, so a model of hundreds of nodes (ResNet-50, BERT-base) stays usable.

The page's state is its address: ``#pass=K&kernel=N&q=TEXT`` picks a pass, opens a kernel and
searches (so a link shows the same view).  The data is in the HTML itself; the script only
shows and hides, so every kernel and pass is in the page before it runs.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Mapping

from ..errors import EmberError
from ..graph.text import format_name, print_graph
from .stages import Kernel, Trace

#: the graph lines that define a value: ``  %name = ...``, the name bare or JSON-quoted
_DEF = re.compile(r'\s*%("(?:[^"\\]|\\.)*"|[A-Za-z0-9_./\-]+) = ')


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render(tr: Trace, times: Mapping[str, float] | None = None, runs: int = 0, *,
           after: str | None = None, kernel: str | None = None) -> str:
    """The page for ``tr``.  ``times``: seconds per kernel over ``runs`` runs (``view.measure``),
    shown as a bar chart; ``after``/``kernel``: the pass shown and the kernel opened first
    (as ``Trace.after`` and ``Trace.kernel`` name them; default: the last pass, none)."""
    first_pass = tr.after(after)[0] if after else len(tr.passes) - 1
    first_kernel = tr.kernel(kernel).index if kernel else -1
    title = f"{tr.graph.name or 'model'}: Ember at -O{tr.opt_level} for {tr.target.kind}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
             f"<style>{_CSS}</style><noscript><style>.graph{{display:block}}</style></noscript></head>"
             f"<body data-pass=\"{first_pass}\" data-kernel=\"{first_kernel}\">"
             f"<header><h1>{_e(title)}</h1><p>{len(tr.passes)} passes, "
             f"{len(tr.graph.nodes)} nodes in, {len(tr.passes[-1][1].nodes)} nodes out, "
             f"{len(tr.kernels)} kernels</p>"
             f"<input id=\"q\" type=\"search\" placeholder=\"search kernels and graph lines (name, op)\" "
             f"aria-label=\"search\"><label><input id=\"only\" type=\"checkbox\"> only matching graph lines</label>"
             f"<span id=\"status\" role=\"status\"></span></header>"]
    texts = [print_graph(g, elide_constants=True) for _, g in tr.passes]
    parts.append(_passes(tr, texts))
    parts.append("<main><p class=\"toc\">" + ("<a href=\"#profile\">time per kernel</a> · " if times is not None else "")
                 + "<a href=\"#graphs\">graph</a> · <a href=\"#kernels\">kernels</a></p>")
    if times is not None:
        parts.append(_profile(times, runs, tr.kernels))
    parts.append(_graphs(tr, texts))
    parts.append(_kernels(tr))
    parts.append(f"</main><script>{_JS}</script></body></html>\n")
    return "".join(parts)


def write(path: str | os.PathLike, page: str) -> Path:
    """Write ``page`` to ``path`` whole or not at all (a temporary file beside it, then rename)."""
    from ..runtime.module import replacing

    dest = Path(path)
    try:
        with replacing(dest) as tmp:
            Path(tmp).write_text(page, encoding="utf-8")
            os.chmod(tmp, 0o644)
    except OSError as e:
        raise EmberError(f"cannot write the report to '{dest}': {e.strerror or e}") from e
    return dest


# ---- the parts -------------------------------------------------------------------------------

def _passes(tr: Trace, texts: list[str]) -> str:
    rows, prev = [], None
    for k, ((name, g), text) in enumerate(zip(tr.passes, texts)):
        same = " class=\"same\" title=\"changed nothing\"" if text == prev else ""
        rows.append(f"<li data-pass=\"{k}\"{same}><a href=\"#pass={k}\"><span class=\"num\">{k}</span> "
                    f"{_e(name)} <span class=\"count\">{len(g.nodes)} nodes</span></a></li>")
        prev = text
    return (f"<nav><h2>Passes</h2><p class=\"count\">the graph after each (dimmed: changed nothing)</p>"
            f"<ol start=\"0\">{''.join(rows)}</ol></nav>")


def _graphs(tr: Trace, texts: list[str]) -> str:
    owner = _kernel_of_value(tr)
    last = len(tr.passes) - 1
    out = ["<section id=\"graphs\"><h2>Graph</h2>"]
    prev_text: str | None = None
    prev_lines: set[str] = set()
    seen: dict[str, int] = {}
    for k, ((name, g), text) in enumerate(zip(tr.passes, texts)):
        lines = text.splitlines()
        head = f"<h3>after pass #{k} {_e(name)}: {len(g.nodes)} nodes</h3>"
        if k != last and text in seen:
            same = seen[text]
            what = "changed nothing" if text == prev_text else "gave back an earlier graph"
            out.append(f"<div class=\"graph\" data-pass=\"{k}\" data-same=\"{same}\">{head}<p>this pass {what}: "
                       f"the graph is the one after <a href=\"#pass={same}\">pass #{same}</a> (below).</p></div>")
        else:
            added = [ln for ln in lines if ln not in prev_lines] if k else []
            now = set(lines)
            gone = [ln for ln in prev_text.splitlines() if ln not in now] if k else []
            summary = (f"<p>{len(added)} lines new (marked), {len(gone)} gone</p>" if added or gone
                       else "<p>this pass changed nothing</p>" if k else "<p>the frontend's graph</p>")
            if gone:
                summary += (f"<details class=\"gone\"><summary>the {len(gone)} lines gone</summary><pre class=\"code gone\">"
                            + "".join(_graph_line(ln, False, None) for ln in gone) + "</pre></details>")
            body = [_graph_line(ln, k and ln not in prev_lines, owner if k == last else None) for ln in lines]
            out.append(f"<div class=\"graph\" data-pass=\"{k}\">{head}{summary}<pre class=\"code\">"
                       + "".join(body) + "</pre></div>")
        seen.setdefault(text, k)
        prev_text, prev_lines = text, set(lines)
    out.append("</section>")
    return "".join(out)


def _graph_line(line: str, new: bool, owner: Mapping[str, int] | None) -> str:
    ref = ""
    if owner:
        m = _DEF.match(line)
        if m and m.group(1) in owner:
            k = owner[m.group(1)]
            ref = f" <a class=\"kref\" href=\"#kernel={k}\">kernel #{k}</a>"
    return f"<span class=\"ln{' new' if new else ''}\">{_e(line)}{ref}</span>\n"


def _kernel_of_value(tr: Trace) -> dict[str, int]:
    """The kernel that computes each value of the last graph, by its name as the text form writes it."""
    return {format_name(v.name): k.index for k in tr.kernels for n in k.group.nodes for v in n.outputs}


def _kernels(tr: Trace) -> str:
    out = [f"<section id=\"kernels\"><h2>Kernels: the fused groups ({len(tr.kernels)})</h2>"]
    if tr.compiled is None:
        out.append("<p>The model has host steps (string ops): it is built per segment and its kernels "
                   "are not listed.</p></section>")
        return "".join(out)
    out.append("<p><button type=\"button\" id=\"open-all\">open all shown</button> "
               "<button type=\"button\" id=\"close-all\">close all</button></p>")
    files = tr.compiled.kernel_files
    first_of_file: dict[str, int] = {}
    for k in tr.kernels:
        ops = sorted({n.op for n in k.group.nodes})
        search = " ".join([k.name, k.c_name] + [f"{n.op} {n.name}" for n in k.group.nodes]).lower()
        nodes = "".join(f"<li><code>{_e(n.op)}</code> {_e(n.name)}</li>" for n in k.group.nodes)
        fname = files.get(k.c_name)
        if not k.c:
            c = "<p>(no C of its own)</p>"
        elif fname in first_of_file:
            j = first_of_file[fname]
            c = (f"<p>the same code as <a href=\"#kernel={j}\">kernel #{j}</a>: one object for both "
                 f"(<code>{_e(k.c_name)}</code> is defined to its function).</p>")
        else:
            first_of_file.setdefault(fname, k.index)
            c = f"<details class=\"c\"><summary>C ({_lines(k.c)} lines)</summary><pre class=\"code\">{_e(k.c)}</pre></details>"
        loop = (f"<details class=\"loop\"><summary>loop IR ({_lines(k.loop_ir)} lines)</summary>"
                f"<pre class=\"code\">{_e(k.loop_ir)}</pre></details>" if k.loop_ir
                else "<p>a region: its bodies are kernels of their own</p>")
        out.append(f"<details class=\"kernel\" id=\"kernel-{k.index}\" data-kernel=\"{k.index}\" "
                   f"data-search=\"{_e(search)}\"><summary><span class=\"num\">#{k.index}</span> "
                   f"<span class=\"kname\">{_e(k.name)}</span> <span class=\"count\">{len(k.group.nodes)} "
                   f"nodes: {_e(', '.join(ops))}</span></summary><div class=\"body\">"
                   f"<p>C function <code>{_e(k.c_name or '-')}</code>; fuses:</p><ol class=\"nodes\">{nodes}</ol>"
                   f"{loop}{c}</div></details>")
    out.append("</section>")
    return "".join(out)


def _lines(text: str) -> int:
    return text.count("\n") + (not text.endswith("\n"))


def _profile(times: Mapping[str, float], runs: int, kernels: list[Kernel]) -> str:
    index = {k.name: k.index for k in kernels}
    total = sum(times.values()) or 1.0
    top = max(times.values(), default=0.0) or 1.0
    rows = []
    for name, sec in sorted(times.items(), key=lambda kv: -kv[1]):
        ms = sec * 1e3 / max(runs, 1)
        label = (f"<a href=\"#kernel={index[name]}\" title=\"{_e(name)}\">#{index[name]} {_e(name)}</a>"
                 if name in index else _e(name))
        rows.append(f"<tr><td class=\"kcell\">{label}</td><td class=\"n\">{ms:.3f}</td>"
                    f"<td class=\"n\">{100 * sec / total:.1f}%</td><td class=\"barcell\">"
                    f"<div class=\"bar\" style=\"width:{100 * sec / top:.2f}%\"></div></td></tr>")
    return (f"<section id=\"profile\"><h2>Time per kernel (ms per run, mean of {runs} runs; "
            f"total {sum(times.values()) * 1e3 / max(runs, 1):.3f} ms)</h2><table class=\"prof\"><thead><tr>"
            f"<th>kernel</th><th>ms/run</th><th>share</th><th></th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></section>")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;display:grid;grid-template-columns:19em 1fr;
grid-template-rows:auto 1fr;height:100vh;color:#1b1b1b;background:#fafafa}
header{grid-column:1/3;padding:.4em 1em;border-bottom:1px solid #ccc;background:#fff}
header h1{font-size:1.15em;margin:.2em 0;display:inline-block}header p{display:inline;margin-left:1em;color:#555}
#q{margin-left:1em;width:24em;font-size:1em}#status{margin-left:1em;color:#555}
nav{overflow:auto;border-right:1px solid #ccc;padding:0 .5em;background:#fff}
nav h2,main h2{font-size:1.05em}nav ol{list-style:none;padding:0;margin:0}
nav li a{display:block;padding:.15em .3em;text-decoration:none;color:inherit;border-radius:3px}
nav li.same a{color:#999}nav li.shown a{background:#dbe8ff;font-weight:600}nav li a:hover{background:#eef}
.num{color:#777;display:inline-block;min-width:1.8em}.count{color:#777;font-size:.9em}nav .count{white-space:nowrap}
main{overflow:auto;padding:0 1em 2em}
#graphs{display:flex;flex-direction:column}#graphs h2{order:-1}.graph{display:none}.graph.shown{display:block}.graph h3{font-size:1em;margin:.5em 0}
pre.code{font:12px/1.35 ui-monospace,monospace;background:#fff;border:1px solid #ddd;padding:.5em;
overflow:auto;max-height:70vh;white-space:pre}
.ln.new{background:#e3f6e3}#graphs.only .ln:not(.hit){display:none}details.gone .ln{background:#fbe4e4}.ln.hit{background:#fff1a8}.kref{color:#36c;font-size:.9em}
details.kernel{border:1px solid #ddd;background:#fff;margin:.2em 0;border-radius:3px}
details.kernel>summary{cursor:pointer;padding:.2em .4em}details.kernel[open]>summary{background:#eef3ff}
details.kernel.target>summary{outline:2px solid #36c}
.body{padding:0 .8em .5em}ol.nodes{margin:.2em 0;columns:2}details.loop,details.c{margin:.3em 0}
table.prof{border-collapse:collapse;width:100%}table.prof td,table.prof th{padding:.1em .4em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.barcell{width:40%}
td.kcell{max-width:30em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar{height:.9em;background:#4a7bd0;min-width:1px}tr.hidden,[hidden]{display:none}
"""

_JS = r"""
(function () {
  "use strict";
  var body = document.body, q = document.getElementById("q"), status = document.getElementById("status");
  var graphs = document.querySelectorAll(".graph"), navs = document.querySelectorAll("nav li");
  var kernels = document.querySelectorAll("details.kernel");
  var state = {pass: body.dataset.pass, kernel: body.dataset.kernel, q: ""};

  function parse() {
    var h = location.hash.replace(/^#/, ""), out = {};
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) out[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " "));
    });
    return out;
  }
  function address() {
    var h = "pass=" + state.pass;
    if (state.kernel !== "-1") h += "&kernel=" + state.kernel;
    if (state.q) h += "&q=" + encodeURIComponent(state.q);
    history.replaceState(null, "", "#" + h);
  }
  function showPass() {
    var cur = document.querySelector('.graph[data-pass="' + state.pass + '"]');
    var same = cur && cur.dataset.same;
    graphs.forEach(function (g) {
      g.classList.toggle("shown", g === cur || g.dataset.pass === same);
      g.style.order = g === cur ? "0" : "1";
    });
    navs.forEach(function (n) { n.classList.toggle("shown", n.dataset.pass === state.pass); });
  }
  function openKernel(scroll) {
    kernels.forEach(function (k) { k.classList.toggle("target", k.dataset.kernel === state.kernel); });
    var k = document.getElementById("kernel-" + state.kernel);
    if (k) { k.open = true; if (scroll) k.scrollIntoView({block: "start"}); }
  }
  function search() {
    var t = state.q.toLowerCase(), shown = 0, hits = 0;
    kernels.forEach(function (k) {
      var ok = !t || k.dataset.search.indexOf(t) >= 0 || k.dataset.kernel === state.kernel;
      k.hidden = !ok;
      if (ok) shown++;
    });
    document.querySelectorAll(".graph.shown > pre .ln").forEach(function (l) {
      var ok = t !== "" && l.textContent.toLowerCase().indexOf(t) >= 0;
      l.classList.toggle("hit", ok);
      if (ok) hits++;
    });
    status.textContent = shown + " of " + kernels.length + " kernels shown" +
      (t ? ", " + hits + " matching lines in the graph shown" : "");
    body.dataset.shown = String(shown);
  }
  function apply(scroll) {
    var h = parse();
    if (h.pass !== undefined && document.querySelector('.graph[data-pass="' + h.pass + '"]')) state.pass = h.pass;
    if (h.kernel !== undefined) state.kernel = h.kernel;
    if (h.q !== undefined) state.q = h.q;
    q.value = state.q;
    showPass(); search(); openKernel(scroll);
  }
  window.addEventListener("hashchange", function () { apply(location.hash.indexOf("kernel=") >= 0); });
  var only = document.getElementById("only");
  only.addEventListener("change", function () {
    document.getElementById("graphs").classList.toggle("only", only.checked);
  });
  q.addEventListener("input", function () { state.q = q.value; search(); address(); });
  document.getElementById("open-all") && document.getElementById("open-all").addEventListener("click", function () {
    kernels.forEach(function (k) { if (!k.hidden) k.open = true; });
  });
  document.getElementById("close-all") && document.getElementById("close-all").addEventListener("click", function () {
    kernels.forEach(function (k) { k.open = false; });
  });
  apply(state.kernel !== "-1" || location.hash.indexOf("kernel=") >= 0);
  body.dataset.ready = "1";
})();
"""
