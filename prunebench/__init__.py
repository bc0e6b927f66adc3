"""prunebench: honest, reproducible head-to-head benchmarks of data-pruning methods.

One training loop (:func:`prunebench.harness.train`), one pruner contract
(:mod:`prunebench.pruners`), one flat result row per run.
"""

__version__ = "0.1.0"

from prunebench.errors import ConfigError, DataError, PrunebenchError  # noqa: E402

__all__ = ["ConfigError", "DataError", "PrunebenchError", "__version__"]
