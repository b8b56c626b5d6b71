"""Realtime: the event bus that services publish to after each state change."""
