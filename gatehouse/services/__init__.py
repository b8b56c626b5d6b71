"""One function per use case; each commits once, then publishes its events."""
