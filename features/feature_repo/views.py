"""Feature views over the offline tables in data/features/ (written by `intent features build`)."""

from features.store.definitions import repo_definitions

_defs = repo_definitions()

user_stats = _defs.user_stats
step_stats = _defs.step_stats
session_state = _defs.session_state
