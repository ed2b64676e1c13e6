"""SIGTERM and Ctrl-C during training are remembered, not fatal; a second Ctrl-C stops at once."""
import logging
import os
import signal

import pytest
import torch

from ppq2l.engine.stop_signals import StopSignals


def test_signals_are_remembered_and_handlers_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopSignals(logging.getLogger("test")) as stop:
        assert stop.requested(torch.device("cpu")) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested(torch.device("cpu")) == signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_second_ctrl_c_interrupts_at_once(caplog):
    with StopSignals(logging.getLogger("test")) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT and "press Ctrl-C again" in caplog.text
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
