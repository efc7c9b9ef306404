"""Offline benchmarks: JSON with p50/p99, throughput and a same-run floor."""
