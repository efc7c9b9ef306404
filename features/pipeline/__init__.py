"""The replay pipeline: decision points, labels, aggregates and the feature build."""
