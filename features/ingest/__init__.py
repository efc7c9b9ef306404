"""Events in: validation, sessionization, bot filtering, the event store and importers."""
