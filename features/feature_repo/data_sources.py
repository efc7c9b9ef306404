"""Sources beyond the views' parquet tables: the session push source and the request data."""

from features.store.definitions import repo_definitions

_defs = repo_definitions()

session_state_push = _defs.session_push
decision_request = _defs.request
