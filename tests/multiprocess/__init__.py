"""Several processes on one file: exactly once, crashes, fork."""
