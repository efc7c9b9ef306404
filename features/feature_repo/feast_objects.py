"""What the plain `feast` CLI applies from this folder: the declarations of the other
files, built once for the environment's layout (INTENT_HOME / INTENT_CONFIGS).

Feast imports each file here as a top-level module and collects every Feast object it
finds, by identity; the other files only hold functions, so each object appears once.
"""

from features.store.definitions import repo_definitions

_defs = repo_definitions()

user, session, step = _defs.user, _defs.session, _defs.step
session_state_push, decision_request = _defs.session_push, _defs.request
user_stats, step_stats, session_state = _defs.user_stats, _defs.step_stats, _defs.session_state
moment_signals = _defs.moment_signals
model_features = _defs.service
