"""Says at the end of a pytest session how the corpus went: how many models matched onnxruntime,
how many are known failures, and every model skipped with its reason (a corpus that could not
be fetched or exported is never passed over silently)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts: dict[str, int] = {}
    skipped = []
    for kind in ("passed", "failed", "xfailed", "xpassed", "skipped"):
        for report in terminalreporter.stats.get(kind, []):
            if "tests/corpus/test_corpus.py" not in report.nodeid.replace("\\", "/"):
                continue
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "skipped":
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                skipped.append(f"  {report.nodeid.rsplit('[', 1)[-1].rstrip(']')}: {reason}")
    if not counts:
        return
    terminalreporter.section("corpus of real models")
    terminalreporter.write_line(", ".join(f"{n} {kind}" for kind, n in counts.items()))
    for line in skipped:
        terminalreporter.write_line(line)
