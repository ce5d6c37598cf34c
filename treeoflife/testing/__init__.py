"""Real test doubles (loopback servers) shared by tests and benchmarks."""
