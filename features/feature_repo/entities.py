"""Entities: user (user_id), session (session_id), funnel step (step), all STRING keys."""

from features.store.definitions import repo_definitions

_defs = repo_definitions()

user = _defs.user
session = _defs.session
step = _defs.step
