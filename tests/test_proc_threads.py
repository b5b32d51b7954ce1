"""Running a program from a threaded daemon must never run Python code in the forked child.

A child forked by ``os.fork`` tears down the other threads' states, so their thread-locals are
finalised *in the child*: an apsw connection closing there waits for SQLite's mutex, which
another thread may hold at that instant, and the child hangs before it ever execs (seen as a
spawn stuck for the whole command timeout while the dashboard polled /api/state).
"""

from __future__ import annotations

import threading

from hivekit.proc import run


def test_other_threads_locals_are_not_finalised_in_the_child():
    held = threading.Lock()
    held.acquire()  # as if another thread were inside SQLite at the moment of the fork
    local = threading.local()

    class Finaliser:
        def __del__(self) -> None:
            with held:  # in a forked child this would wait forever
                pass

    ready, done = threading.Event(), threading.Event()

    def other_thread() -> None:
        local.value = Finaliser()
        ready.set()
        done.wait()

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    ready.wait()
    try:
        assert run(["echo", "ok"], timeout=10) == "ok\n"
    finally:
        held.release()
        done.set()
        thread.join()
