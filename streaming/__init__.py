"""Event-bus ingestion: events from a Redis Streams consumer group into the live state."""
