"""The compute side: consume ``shoal.compute``, run each job in Docker, publish its events.

Modules, one concept each:

- ``settings``: :class:`ExecutorSettings` (``SHOAL_*``), loaded once by ``service.run``.
- ``failures``: :class:`JobError` and the error categories a terminal event carries.
- ``runner``: the ``ContainerRunner`` port and the container spec; ``docker_runner`` is the
  aiodocker implementation, ``memory_runner`` its in-memory twin (same contract tests).
- ``spec``: a job plus node settings → the container spec (limits, volumes, env, labels).
- ``inputs`` / ``outputs``: inline, url and local inputs as tar archives; outputs as tar.gz.
- ``proxy`` / ``network``: the per-job HTTP(S) allow-list proxy and the internal Docker network
  with its iptables rules.
- ``events``: the event-sink port (AMQP and in-memory) and per-job sequence numbers.
- ``execution``: one job from accepted to terminal event.
- ``service``: the consumer, control messages, signals and shutdown.
"""
