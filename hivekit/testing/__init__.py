"""Testing hivekit and its plugins without containers (as pytest's ``pytester`` tests pytest).

* :mod:`hivekit.testing.fake`: the fake backend (``[hive] backend = "fake"``), which records
  every call and can be told to fail, hang or crash a build.
* :mod:`hivekit.testing.harness`: :class:`HiveProcess`, a real ``hivekit serve`` in a child
  process, with helpers to talk to it.
* :mod:`hivekit.testing.pytest_plugin`: pytest fixtures over it (``make_hive``, ``hive``,
  ``short_tmp``): ``pytest_plugins = ["hivekit.testing.pytest_plugin"]`` in a conftest.
* :mod:`hivekit.testing.conformance`: the backend contract, ``BackendContract``, a backend's
  tests subclass; :mod:`hivekit.testing.probe` is the plugin it watches the backend through.

The names below are re-exported so that ``from hivekit.testing import HiveProcess, control``
keeps working.
"""

from hivekit.testing.fake import FAIL_MARKER, FakeConfig, calls, control, fake_dir
from hivekit.testing.harness import HiveProcess

__all__ = ["FAIL_MARKER", "FakeConfig", "HiveProcess", "calls", "control", "fake_dir"]
