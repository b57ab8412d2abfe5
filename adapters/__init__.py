"""I/O adapters that drive the sans-IO core: ``blocking`` (sqlite3) today.

Installed as ``sansio_broker.adapters``; never importable as a top-level
``adapters`` package (that name belongs to another PyPI project).
"""
