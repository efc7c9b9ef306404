"""Importers: Segment / RudderStack JSON lines and CSV / parquet tables -> canonical events.

Each importer maps a source onto `features.events.COLUMNS` through a YAML mapping
(`configs/mappings/`; units and step names converted, `mapping.py`, `steps.py`),
quarantines records it cannot map or that break a validation rule, each with its original
text and line, and writes the rest to `raw/<name>/events.parquet` for `intent validate`.
`suggest.py` surveys a Segment export and writes a mapping skeleton to edit.
"""
