"""hivekit's own tests use the fixtures it offers third parties: ``short_tmp``, ``make_hive``
(real ``hivekit serve`` processes) and ``hive`` (one on the fake backend, its manager up)."""

pytest_plugins = ["hivekit.testing.pytest_plugin"]
