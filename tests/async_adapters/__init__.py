"""The asyncio and trio adapters: one suite run on both runtimes (anyio's pytest
plugin), plus what only one runtime has.
"""
