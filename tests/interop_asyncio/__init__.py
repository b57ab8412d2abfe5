"""The asyncio adapter and SimpleBroker processes on one file."""
