"""The console handler follows sys.stderr: a stream replaced after the first message (a test's
capture that has since closed, an application redirecting stderr) never holds the log."""
import io
import sys

from ppq2l.utils.logger import get_logger


def test_the_log_goes_to_the_current_stderr(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    get_logger().info("one")
    first.close()  # as a finished capture is
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    get_logger().info("two")
    assert second.getvalue().rstrip().endswith("INFO two")
