"""The Docker engine: containers through aiodocker (``engine.DockerEngine``)."""
