"""Group commit: shared claims and writes."""
