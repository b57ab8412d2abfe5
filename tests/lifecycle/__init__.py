"""Closing, forking and threads under load, and the storms."""
