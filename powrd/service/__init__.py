"""Daemon wiring: start-up and shutdown order, signals, systemd notification."""
