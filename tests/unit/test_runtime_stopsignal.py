"""The signal names images give as ``StopSignal``."""

from __future__ import annotations

import signal

import pytest

from dockyard.runtime.imageconfig import parse_signal, signal_name


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGTERM", signal.SIGTERM),
        ("term", signal.SIGTERM),
        (" SIGQUIT ", signal.SIGQUIT),
        ("9", signal.SIGKILL),
        ("SIGRTMIN+3", signal.SIGRTMIN + 3),
        ("SIGRTMAX", signal.SIGRTMAX),
    ],
)
def test_stop_signals(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["", "0", "SIGNOPE", "RTMIN+99", "-1", "SIGRTMIN+"])
def test_bad_stop_signals(text):
    with pytest.raises(ValueError, match="is not a signal"):
        parse_signal(text)


def test_signal_names():
    assert signal_name(signal.SIGUSR1) == "SIGUSR1"
    assert signal_name(signal.SIGRTMIN + 3) == f"signal {signal.SIGRTMIN + 3}"
