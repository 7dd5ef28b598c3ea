"""The rehearsal's stack restarts what exits on its own, as the deployment's restart policy does,
and leaves alone a process a fault holds down."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rehearsal import stack as stack_module
from rehearsal.stack import MAX_RESTARTS, Stack, StackConfig


def _stack(tmp_path: Path) -> Stack:
    return Stack(StackConfig(out=tmp_path, database_url="postgres://unused/none", clock_env={}))


def _wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_process_that_exits_is_restarted_and_a_crash_loop_is_left_down(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "WATCH_SECONDS", 0.05)
    stack = _stack(tmp_path)
    with stack:
        crashing = stack._process("worker-9", [sys.executable, "-c", "print('unrecoverable'); raise SystemExit(3)"])
        steady = stack._process("beat", [sys.executable, "-c", "import time; time.sleep(60)"])
        stack.supervise()
        _wait(lambda: crashing.restarts == MAX_RESTARTS and not crashing.alive)
        time.sleep(0.3)  # the supervisor has had time to try once more, and must not
        assert crashing.starts == MAX_RESTARTS + 1
        assert steady.alive and steady.starts == 1
        exits = [e for e in stack.exits if e["process"] == "worker-9"]
        assert len(exits) == MAX_RESTARTS
        assert {e["exit_status"] for e in exits} == {3} and "unrecoverable" in str(exits[0]["log_tail"])
        down = stack.check_alive()
        assert set(down) == {"worker-9"} and down["worker-9"]["restarts"] == MAX_RESTARTS
    assert not steady.alive  # stop() ends everything, the supervisor first


def test_a_worker_killed_by_the_fault_stays_down_until_the_fault_restarts_it(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "WATCH_SECONDS", 0.05)
    stack = _stack(tmp_path)
    with stack:
        worker = stack._process("worker-0", [sys.executable, "-c", "import time; time.sleep(60)"])
        stack.supervise()
        stack.kill_worker(0)
        time.sleep(0.4)
        assert not worker.alive and worker.starts == 1 and stack.exits == []
        stack.restart_worker(0)
        assert worker.alive and worker.starts == 2 and worker.restarts == 0
        assert stack.check_alive() == {}
