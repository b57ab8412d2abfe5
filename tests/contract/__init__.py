"""The storage contract, one test body for every adapter."""
