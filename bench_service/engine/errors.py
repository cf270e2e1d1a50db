"""Errors the engine raises for bad configuration (never for a trial that merely trains badly)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A trial or sweep configuration is invalid.

    ``field`` names the offending field as a dotted path (``optimizer.params.lr``) so that
    the CLI and the HTTP API can point the user at it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class UnknownNameError(ConfigError):
    """A name that no registry holds; the message lists the closest valid names."""


class IncompatibleError(ConfigError):
    """A combination that cannot run, e.g. BatchNorm on a workload without layers."""


class StopTrial(Exception):
    """Raised by a metrics callback to stop a running trial early, keeping its record.

    The runner catches it and ends the trial with ``status`` (``pruned`` or ``cancelled``).
    """

    status = "cancelled"


class TrialPruned(StopTrial):
    """The tuner decided the trial is not promising (e.g. Optuna's median pruner)."""

    status = "pruned"


class TrialCancelled(StopTrial):
    """The user or the driver cancelled the trial."""

    status = "cancelled"
