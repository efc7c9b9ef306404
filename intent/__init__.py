"""The `intent` command line: one entry point for every job."""
