"""The contract can fail: run against a backend that breaks it on purpose
(tests/example_plugin/hivekit_broken_backend.py), each check it breaks fails, saying which
behaviour broke."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from xml.etree import ElementTree

import pytest

#: Every check it breaks and what the failure must say. (It passes the spawn, the restart
#: (stop, then start) and the daemon restart: its bookkeeping is empty after a restart, so the
#: core starts every wanted agent again, which is right.)
EXPECTED = {
    "test_a_rebuild_builds_the_applied_main_not_the_proposed_repo":
        "a rebuild builds the applied main, not the proposed repo",
    "test_a_broken_config_fails_the_build_and_the_previous_version_keeps_running":
        "a failed build raises a HiveError whose message the operator reads",
    "test_start_is_idempotent_and_runs_what_was_last_built": "starting a running agent is fine",
    "test_stopping_a_stopped_agent_is_fine": "stopping a stopped agent is fine",
    "test_destroy_stops_and_removes_and_tolerates_a_missing_container_and_a_purge":
        "a destroyed agent does not run",
    "test_a_failed_spawn_cleans_up[after]": "nothing of a failed spawn runs",
    "test_a_failed_spawn_cleans_up[before]":
        "the destroy after a failed spawn succeeds (there is no container at all)",
    "test_is_running_answers_from_many_threads_and_is_false_for_unknown_agents":
        "is_running answers for an agent that never existed",
    "test_is_running_turns_false_when_the_agent_dies_on_its_own":
        "is_running turns False when the agent dies on its own",
    "test_the_dashboard_hears_when_an_agent_dies_on_its_own":
        "the dashboard shows an agent that died on its own as not running",
    "test_shutdown_leaves_no_stray_process": "a stopped daemon leaves no stray process behind",
    "test_the_identity_variables_are_set": "the agent's HIVE_PORT is",
    "test_output_reaches_the_live_log": "a spawn's output reaches the live log",
    "test_long_work_stops_when_the_hive_is_stopping":
        "a long build gives up when the hive is stopping",
    "test_an_agent_that_exits_on_its_new_config_is_rolled_back":
        "an agent that does not stay up on its new config fails the deploy",
}

MODULE = textwrap.dedent('''
    from hivekit.testing.conformance import BackendContract


    class TestBroken(BackendContract):
        backend = "broken"
        timeout = 30.0  # a failing check waits this long; under load, less is too little

        def slow_files(self, hive, name):
            return {"SLOW": "its build sleeps ten minutes\\n"}

        def crashing_files(self, hive, name):
            return {"EXIT": "its agent exits at once\\n"}
''')


@pytest.mark.timeout(900)  # the whole suite, its failing checks waiting out their timeouts
def test_the_contract_fails_a_backend_that_breaks_it(tmp_path):
    (tmp_path / "test_broken.py").write_text(MODULE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_broken.py", "-q", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-o", "addopts=", "--timeout=300", "--junitxml=report.xml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    out = result.stdout
    failed = {case.get("name"): case.find("failure").get("message", "")
              for case in ElementTree.parse(tmp_path / "report.xml").iter("testcase")
              if case.find("failure") is not None}
    assert result.returncode == 1, out[-3000:]
    missing = {name: says for name, says in EXPECTED.items()
               if name not in failed or says not in failed[name]}
    assert not missing, f"checks that did not fail as expected: {missing}\n{out[-6000:]}"
    assert set(failed) == set(EXPECTED), sorted(set(failed) ^ set(EXPECTED))
