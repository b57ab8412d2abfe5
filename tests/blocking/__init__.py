"""The blocking adapter's own behaviour."""
