"""Engine adapters: each implements ``shoal.executor.engine.Engine`` for one execution
environment."""
