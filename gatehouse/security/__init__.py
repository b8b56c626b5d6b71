"""Cryptography without a database or a request: passwords, tokens, keys."""
