"""hivekit's benchmarks: each measures hivekit as a ratio against a floor measured in the same
run (absolute times on a shared machine are noise). ``python -m bench --help``."""
