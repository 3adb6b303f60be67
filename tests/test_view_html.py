"""``ember view -o report.html``: the page lists every pass and kernel with its code escaped, is
self-contained, is written whole; and in headless Chromium (Debian's ``chromium``; skipped
when it is not installed) its script shows the pass, the search and the kernel the address asks
for.  With the shared models built, ResNet-50 and BERT-base render with every kernel shown."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import onnx
import pytest

from ember.cli import main
from ember.errors import EmberError
from ember.graph.text import format_name, print_graph
from ember.tools import view_html
from ember.tools.stages import trace
from test_cli import tiny_cnn

#: a node name the page must show as text, never as markup (its value takes the name too)
NODE_NAME = 'relu</pre><script>alert("x")</script>&amp;'


def hostile_cnn() -> onnx.ModelProto:
    """tiny_cnn with markup in a node's name."""
    m = tiny_cnn()
    for n in m.graph.node:
        if n.name == "relu":
            n.name = NODE_NAME
    return m


@pytest.fixture(scope="module")
def tr():
    return trace(hostile_cnn())


def _pre_texts(page: str, start: str, end: str) -> list[str]:
    """The raw contents of the <pre> elements between the markers ``start`` and ``end``."""
    i = page.index(start)
    j = page.index(end, i + len(start)) if end else len(page)
    return re.findall(r'<pre class="code">(.*?)</pre>', page[i:j], re.S)


def test_page_lists_every_pass_and_kernel_with_escaped_code(tr):
    page = view_html.render(tr)
    assert len(tr.kernels) == 5 and len(tr.passes) > 10
    for k, (name, g) in enumerate(tr.passes):
        assert re.search(rf'<li data-pass="{k}"[^>]*><a href="#pass={k}"><span class="num">{k}</span> {name} ', page)
        assert re.search(rf'<div class="graph" data-pass="{k}"( data-same="\d+")?>', page)
    shared = set()
    for k in tr.kernels:
        nxt = f'id="kernel-{k.index + 1}"' if k.index + 1 < len(tr.kernels) else "</section>"
        block_start = f'id="kernel-{k.index}"'
        assert html.escape(k.name) in page
        pres = _pre_texts(page, block_start, nxt)
        assert all("<" not in p and ">" not in p for p in pres)   # every < and > of the code escaped
        texts = [html.unescape(p) for p in pres]
        assert texts[0] == k.loop_ir
        if len(texts) == 2:
            assert texts[1] == k.c
        else:                                                      # a file shared with an earlier kernel
            assert len(texts) == 1 and "the same code as" in page[page.index(block_start):page.index(nxt)]
            shared.add(k.index)
        for n in k.group.nodes:
            assert f"<li><code>{n.op}</code> {html.escape(n.name)}</li>" in page
    assert len(shared) < len(tr.kernels)
    # the names with markup are text: escaped in the kernel list and in the graph
    assert "<script>alert" not in page and "</pre><script>" not in page
    # (the layout pass may rename the relu it rewrites: NODE_NAME + "_1" where it blocks channels)
    assert re.search(rf"<li><code>relu</code> {re.escape(html.escape(NODE_NAME))}(_\d+)?</li>", page)
    graphs = _pre_texts(page, '<section id="graphs">', '<section id="kernels">')
    texts = [print_graph(g, elide_constants=True) for _, g in tr.passes]
    assert 1 < len(graphs) < len(tr.passes)              # a graph a pass left as it was is not repeated
    assert len(graphs) == len(set(texts[:-1])) + (texts[-1] in texts[:-1])
    # %"relu</pre>..." escaped in each (its closing quote left out: the layout pass may add "_1")
    assert all(html.escape(format_name(NODE_NAME))[:-len("&quot;")] in g for g in graphs)
    gone = re.findall(r'<pre class="code gone">(.*?)</pre>', page, re.S)   # what each pass removed
    assert gone and "%conv_w = const" in gone[0] and "%conv_w = const" not in graphs[-1]
    assert html.unescape(re.sub(r"<[^>]*>", "", graphs[-1])).split("\n")[:-1] == [
        ln + (f" kernel #{k}" if k is not None else "") for ln, k in _owners(texts[-1], tr)]
    # the graph after the last pass links each node to its kernel
    last = page[page.index(f'<div class="graph" data-pass="{len(tr.passes) - 1}">'):page.index('<section id="kernels">')]
    assert {int(m) for m in re.findall(r'href="#kernel=(\d+)"', last)} == {k.index for k in tr.kernels}


def _owners(text, tr):
    """Each line of the last graph with the kernel that computes the value it defines, if any."""
    owner = {v.name: k.index for k in tr.kernels for n in k.group.nodes for v in n.outputs}
    for ln in text.splitlines():
        name = next((n for n in owner if re.match(rf"\s*%{re.escape(format_name(n))} = ", ln)), None)
        yield ln, owner.get(name)


def test_page_is_self_contained(tr):
    page = view_html.render(tr, {k.name: 0.001 * (k.index + 1) for k in tr.kernels}, 2)
    assert page.count("<script>") == 1 and "<script " not in page and "<link" not in page
    assert not re.search(r'(src|href)="(?!#)', page)
    assert "url(" not in page and "@import" not in page and "http" not in page.replace("http-equiv", "")
    # the chart: one bar per kernel, the longest at 100%
    assert len(re.findall(r'<div class="bar" style="width:[0-9.]+%">', page)) == len(tr.kernels)
    assert 'style="width:100.00%"' in page


def test_first_pass_and_kernel(tr):
    page = view_html.render(tr, after="cse#2", kernel=tr.kernels[2].name)
    k = [n for n, _ in tr.passes].index("cse", [n for n, _ in tr.passes].index("cse") + 1)
    assert f'<body data-pass="{k}" data-kernel="2">' in page
    with pytest.raises(EmberError, match="no pass"):
        view_html.render(tr, after="nope")
    with pytest.raises(EmberError, match="no kernel"):
        view_html.render(tr, kernel="nope")


def test_model_with_host_steps():
    from runtime.test_program import mixed_model     # string ops: built per segment, kernels not traced

    tr = trace(mixed_model())
    page = view_html.render(tr)
    assert tr.compiled is None and "its kernels are not listed" in page
    assert all(f'<li data-pass="{k}"' in page for k in range(len(tr.passes)))


def test_write_is_whole_or_nothing(tmp_path):
    dest = view_html.write(tmp_path / "r.html", "<p>one</p>")
    assert dest.read_text() == "<p>one</p>" and os.listdir(tmp_path) == ["r.html"]
    with pytest.raises(EmberError, match="cannot write the report"):
        view_html.write(tmp_path / "missing" / "r.html", "<p>two</p>")
    with pytest.raises(EmberError, match="cannot write the report"):
        view_html.write(tmp_path / "r.html" / "x.html", "<p>two</p>")
    assert os.listdir(tmp_path) == ["r.html"] and dest.read_text() == "<p>one</p>"


def test_cli_writes_the_page_with_the_profile(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(hostile_cnn(), str(model))
    out = tmp_path / "report.html"
    assert main(["view", str(model), "-o", str(out), "--profile", "--runs", "2", "--kernel", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    assert '<section id="profile">' in page and 'data-kernel="1"' in page
    rows = re.findall(r'<a href="#kernel=(\d+)" title="[^"]*">#\d+ [^<]*</a></td><td class="n">([0-9.]+)</td>', page)
    assert sorted(int(k) for k, _ in rows) == list(range(5))
    ms = [float(t) for _, t in rows]
    assert ms == sorted(ms, reverse=True) and ms[0] > 0
    assert main(["view", str(model), "-o", str(tmp_path / "no" / "r.html")]) == 1


# ---- in a browser ------------------------------------------------------------------------------

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: install Debian's chromium package (make browser-deps)")


def dump_dom(page: Path, fragment: str, profile_dir: Path) -> str:
    """The DOM of ``page`` after its script ran, as headless Chromium serializes it."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile_dir}", "--dump-dom", page.resolve().as_uri() + fragment]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
    return r.stdout


class Shown(HTMLParser):
    """From a serialized DOM: the body's attributes, the passes shown, each kernel's attributes
    (hidden, open) and the status line's text."""

    def __init__(self, dom: str):
        super().__init__()
        self.body: dict = {}
        self.graphs_shown: list[str] = []
        self.kernels: dict[int, dict] = {}
        self.status = ""
        self._in_status = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        elif tag == "div" and "graph" in cls and "shown" in cls:
            self.graphs_shown.append(a["data-pass"])
        elif tag == "details" and "kernel" in cls:
            self.kernels[int(a["data-kernel"])] = a
        elif a.get("id") == "status":
            self._in_status = True

    def handle_endtag(self, tag):
        self._in_status = False

    def handle_data(self, data):
        if self._in_status:
            self.status += data


def test_chromium_shows_what_the_address_asks(tr, tmp_path):
    page = view_html.write(tmp_path / "r.html", view_html.render(tr))
    dom = Shown(dump_dom(page, "", tmp_path / "profile"))
    assert dom.body.get("data-ready") == "1"                                  # the script ran to its end
    assert dom.graphs_shown == [str(len(tr.passes) - 1)]                     # the last pass by default
    assert sorted(dom.kernels) == [k.index for k in tr.kernels]
    assert not any("hidden" in a or "open" in a for a in dom.kernels.values())
    assert dom.status == f"{len(tr.kernels)} of {len(tr.kernels)} kernels shown"

    want = [k.index for k in tr.kernels if "conv" in (k.name + k.nodes).lower()]
    assert 0 < len(want) < len(tr.kernels)
    # pass 3 (cse) changes nothing here: the page shows its note and the graph it left
    texts = [print_graph(g, elide_constants=True) for _, g in tr.passes]
    assert texts[3] == texts[2]
    dom = Shown(dump_dom(page, "#pass=3&q=CONV&kernel=4", tmp_path / "profile"))
    assert dom.graphs_shown == [str(texts.index(texts[3])), "3"]
    shown = [k for k, a in dom.kernels.items() if "hidden" not in a]
    assert shown == sorted(set(want) | {4})      # the search's kernels, and the one asked for
    assert "open" in dom.kernels[4] and all("open" not in dom.kernels[k] for k in want)
    hits = sum("conv" in ln.lower() for ln in texts[3].splitlines())
    assert dom.status == f"{len(want) + 1} of {len(tr.kernels)} kernels shown, {hits} matching lines in the graph shown"
    assert dom.body["data-shown"] == str(len(want) + 1)


MODELS = Path(os.environ.get("EMBER_MODELS_DIR", Path(__file__).resolve().parent.parent / "build" / "models"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_chromium_shows_every_kernel_of_a_big_model(name, tmp_path):
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not built (make models)")
    chromium()
    big = trace(str(path))
    page = view_html.write(tmp_path / "r.html", view_html.render(big))
    t = time.perf_counter()
    dom = Shown(dump_dom(page, "#q=", tmp_path / "profile"))
    print(f"{name}: {page.stat().st_size / 2**20:.1f} MiB, {len(big.kernels)} kernels, "
          f"{len(big.passes)} passes, Chromium {time.perf_counter() - t:.1f} s")
    assert dom.body.get("data-ready") == "1" and len(big.kernels) > 50
    assert sorted(k for k, a in dom.kernels.items() if "hidden" not in a) == [k.index for k in big.kernels]
    assert dom.status == f"{len(big.kernels)} of {len(big.kernels)} kernels shown"
