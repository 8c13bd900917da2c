"""Stratum V1: the sans-I/O protocol core and its TCP/TLS transports (stdlib only)."""
