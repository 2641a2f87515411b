"""Engine adapters: each implements ``executor.engine.Engine`` for one execution environment."""
