"""The ``shoal`` command line: ``exec``, ``job …`` and ``serve``."""
