"""On-demand view `moment_signals`: request-time signals from `features.signals.derive()`."""

from features.store.definitions import repo_definitions

moment_signals = repo_definitions().moment_signals
