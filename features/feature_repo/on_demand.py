"""On-demand view `moment_signals`: request-time signals from `features.signals.derive()`."""

from features.feast_defs import repo_definitions

moment_signals = repo_definitions().moment_signals
