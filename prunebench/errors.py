"""Errors that the CLI turns into one line on stderr and exit code 2.

Anything raised as a :class:`PrunebenchError` is a user mistake (bad option, missing data, malformed
study file); its message must say what is wrong and what is valid, on one line.
"""


class PrunebenchError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(PrunebenchError, ValueError):
    """An option, argument or file has an invalid name, type or value."""


class DataError(PrunebenchError):
    """A dataset is missing, corrupt or inconsistent."""


class TrainingError(PrunebenchError):
    """Training diverged (NaN/inf loss) or otherwise cannot continue."""


class TrackingUnavailable(PrunebenchError):
    """The MLflow tracking server stopped answering mid-run (retries bounded to seconds); the run's
    checkpoint, if any, is intact and resumable."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, systemd, Slurm, Kubernetes), handled like Ctrl-C: the run is
    marked KILLED, a checkpoint being written is finished first, and the CLI exits with 143."""
