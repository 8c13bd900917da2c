"""A SHA-256d proof-of-work miner written in Python."""

__version__ = "0.1.0"
