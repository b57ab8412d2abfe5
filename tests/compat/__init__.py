"""SimpleBroker file compatibility, in processes side by side."""
