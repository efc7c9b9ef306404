"""Importers: Segment / RudderStack JSON lines and CSV / parquet tables -> canonical events.

Each importer maps a source onto `features.events.COLUMNS` through a YAML mapping
(`configs/mappings/`), quarantines records it cannot map, and writes the rest to
`raw/<name>/events.parquet` for `intent validate`.
"""
