"""Print the chaos table at the end of the session (tests/chaos/report.py renders it)."""

from report import render


def pytest_terminal_summary(terminalreporter):
    import test_chaos

    if test_chaos.ROWS:
        terminalreporter.section(f"chaos: {test_chaos.BROKER}")
        terminalreporter.write_line(render(test_chaos.ROWS))
