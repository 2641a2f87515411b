"""Shoal: a queue-driven batch system that runs code, not containers.

This package holds what every process shares: the job model, wire messages and queue
topology, settings, logging set-up and errors.
"""

__version__ = "0.1.0"
