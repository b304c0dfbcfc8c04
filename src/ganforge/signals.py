"""Stop signals around a ``ganforge-train`` run: those that arrive while Python still imports torch and
Lightning (noted, acted on once the run can stop cleanly), and the handlers to put back afterwards."""

from __future__ import annotations

import signal
import threading
from typing import Any

# SIGTERM or SIGUSR2 during the imports (seconds) must not kill the job with the default handler: the
# command line installs a handler that only takes note, first thing; the run stops cleanly at the first
# point it can (before training, or after the first batch).
EARLY_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
_early_signals: list[int] = []


def _note_signal(signum: int, frame: object) -> None:
    _early_signals.append(signum)


def install_early_handlers() -> None:
    """Take note of :data:`EARLY_SIGNALS` from now on (where nothing else handles them yet)."""
    for sig in EARLY_SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _note_signal)


def saved_signal_handlers() -> dict[signal.Signals, Any]:
    return {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}


def restore_signal_handlers(handlers: dict[signal.Signals, Any]) -> None:
    """Put back the handlers of before the run (Lightning leaves its own installed)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


def take_early_signal(preemption: Any | None) -> signal.Signals | None:
    """A stop signal noted before training started; the :class:`~ganforge.callbacks.preemption.Preemption`
    callback (``preemption``) hears of later ones. Without that callback, the signal does what it would
    have done."""
    if preemption is not None:
        preemption.early_signals = _early_signals
    if not _early_signals:
        return None
    sig = signal.Signals(_early_signals[-1])
    _early_signals.clear()
    if preemption is None or sig not in preemption.signals:
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)
    return sig
