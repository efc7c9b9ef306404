"""The Feast feature store: declarations, repo management, the online read path."""
