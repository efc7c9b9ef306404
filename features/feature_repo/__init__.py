"""The Feast repo: one file per kind of object, each a readable declaration.

Each file's `declare()` spells out its objects; what varies with the layout (table paths,
TTLs, the contract's columns, the FeatureService name) comes in as `RepoValues`.
`features.store.definitions.build_definitions` calls them for any layout (our jobs, the
server); `feast_objects.py` shows the plain `feast` CLI the same objects built for the
environment's layout (INTENT_HOME / INTENT_CONFIGS). Feast never imports this file.
"""
