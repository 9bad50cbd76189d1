"""The tester engine: state, verdicts, weights, scheduling and the probe layer."""
