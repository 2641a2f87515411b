"""The compute side: consume the compute queue of each engine served, run each job on its
engine (Docker or WebAssembly), publish its events.

Modules, one concept each:

- ``settings``: :class:`ExecutorSettings` (``SHOAL_*``), loaded once by ``service.run``.
- ``failures``: :class:`JobError` and the error categories a terminal event carries.
- ``engine``: the ``Engine`` port (and its ``Workload``) the lifecycle runs jobs through.
- ``limits``: a job's memory, CPU, timeout and stop grace after the node's defaults and maxima.
- ``engines.docker``: the Docker engine: the ``ContainerRunner`` port (``runner``), its
  aiodocker implementation (``docker_runner``) and in-memory twin (``memory_runner``), the
  container spec (``spec``), inputs and outputs as tar archives, the volume watch, the
  per-job HTTP(S) allow-list proxy and its internal network (``proxy``, ``network``), and
  the python dependency cache (``depcache``).
- ``engines.wasm``: the WebAssembly engine (wasmtime, in-process).
- ``events``: the event-sink port (AMQP and in-memory) and per-job sequence numbers.
- ``execution``: one job from accepted to terminal event, on any engine.
- ``service``: the consumers, control messages, signals and shutdown.
"""
