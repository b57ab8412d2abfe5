"""I/O adapters that drive the sans-IO core: ``blocking`` (sqlite3),
``asyncio`` (aiosqlite with aiosqlitepool) and ``trio``.

Each public module (``blocking``, ``asyncio``, ``trio``) has ``__all__``;
modules starting with ``_`` are private. ``docs/architecture.md`` shows how
they fit together.

Installed as ``sansio_broker.adapters``; never importable as a top-level
``adapters`` package (that name belongs to another PyPI project).
"""
