"""SIGTERM as a clean cancel: the same path as Ctrl-C, with its own exit status.

SIGTERM is how a driver is asked to stop by everything that runs it unattended: ``ray job
stop``, Kubernetes (pod deletion, a failed probe), ``docker stop``, systemd, a plain ``kill``.
Python's default is to die on the spot and Ray's driver handler calls ``sys.exit``, neither of
which runs the sweep loops' cancel path, so the sweep stayed ``running`` with its trials
``running``. Here the handler raises ``Terminated`` in the main thread: a ``KeyboardInterrupt``
subclass, so every ``except KeyboardInterrupt`` that cancels on Ctrl-C (unfinished trials
marked ``cancelled``, the writer stopped, the sweep ``cancelled``) does the same on SIGTERM.
The CLI then exits 143 (128 + SIGTERM), as a process killed by SIGTERM would, instead of 130.

Only the first SIGTERM interrupts: later ones while the cancel is under way are recorded and
ignored, so the cleanup they asked for is not itself cut short (an orchestrator sends SIGKILL
after its grace period anyway).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

#: The exit status of a driver stopped by SIGTERM (what a shell reports for one killed by it).
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM: cancel like Ctrl-C, then exit 143."""


_received = 0


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _received
    _received += 1
    if _received == 1:
        raise Terminated(f"received signal {signum}")


def install_sigterm_handler() -> Any:
    """Make SIGTERM raise ``Terminated`` in the main thread; returns the previous handler.

    A no-op (returning ``None``) outside the main thread, where Python cannot set handlers.
    Call it again after ``ray.init``, which installs its own ``sys.exit`` handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def restore_sigterm_handler(previous: Any) -> None:
    """Put back a handler that ``install_sigterm_handler`` returned (``None``: nothing)."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def terminated() -> bool:
    """Whether this process has received SIGTERM since it started (or since ``reset``)."""
    return _received > 0


def reset() -> None:
    """Forget earlier SIGTERMs (for in-process callers that run several commands)."""
    global _received
    _received = 0


def cancel_exit_code(code: int) -> int:
    """``code``, except that a cancel (130) caused by SIGTERM becomes 143."""
    return EXIT_TERMINATED if code == 130 and terminated() else code


__all__ = [
    "EXIT_TERMINATED", "Terminated", "cancel_exit_code", "install_sigterm_handler", "reset",
    "restore_sigterm_handler", "terminated",
]
