"""Background tasks: work in a worker thread, finish in the collecting thread, cooperative cancel."""

from __future__ import annotations

import threading
import time

import pytest

from sparsert.background import BackgroundTask, TaskMonitor
from sparsert.errors import Cancelled, InputError


def _wait(task: BackgroundTask, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not task.done:
        assert time.monotonic() < deadline, "task did not end"
        time.sleep(0.01)


def test_work_runs_in_a_worker_thread_and_finish_in_the_collector():
    threads = {}
    release = threading.Event()

    def work(progress):
        progress.report("step 1")
        threads["work"] = threading.current_thread()
        release.wait(5)
        return 20

    def finish(output):
        threads["finish"] = threading.current_thread()
        return output + 1

    task = BackgroundTask(work, finish).start()
    with pytest.raises(InputError, match="still running"):
        task.result()
    release.set()
    _wait(task)
    assert task.progress.text == "step 1"
    assert task.result() == 21
    assert threads["work"] is not threading.current_thread() and threads["finish"] is threading.current_thread()
    with pytest.raises(InputError, match="collected already"):
        task.result()
    with pytest.raises(InputError, match="started already"):
        task.start()


def test_cancel_stops_at_the_next_step_and_never_finishes():
    reached, finished = [], []
    started, cancelled = threading.Event(), threading.Event()

    def work(progress):
        progress.report("first")
        started.set()
        cancelled.wait(5)
        progress.report("second")  # raises: cancelled meanwhile
        reached.append("second")

    task = BackgroundTask(work, finished.append).start()
    started.wait(5)
    task.cancel()
    cancelled.set()
    _wait(task)
    with pytest.raises(Cancelled, match="nothing was added"):
        task.result()
    assert reached == [] and finished == []


def test_errors_reach_the_collector_and_run_works_in_place():
    def fail(progress):
        raise InputError("bad CT")

    task = BackgroundTask(fail, lambda output: output).start()
    _wait(task)
    with pytest.raises(InputError, match="bad CT"):
        task.result()
    assert BackgroundTask(lambda progress: 2, lambda output: output * 3).run() == 6


def test_the_monitor_shows_progress_collects_and_reports():
    statuses, running, results, ticks = [], [], [], []

    class Timer:  # the panel's polling timer (a qt.QTimer in Slicer)
        def start(self):
            ticks.append("start")

        def stop(self):
            ticks.append("stop")

    monitor = TaskMonitor(statuses.append, running.append, timer=Timer())
    release = threading.Event()

    def work(progress):
        progress.report("Predicting")
        release.wait(5)
        return 1

    monitor.start(BackgroundTask(work, lambda output: output + 1), results.append)
    assert monitor.running and running == [True]
    with pytest.raises(InputError, match="another step is still running"):
        monitor.start(BackgroundTask(work, lambda output: output), results.append)
    release.set()
    deadline = time.monotonic() + 10
    while monitor.running:
        assert time.monotonic() < deadline
        monitor.poll()
        time.sleep(0.01)
    assert results == [2] and running == [True, False] and "Predicting" in statuses
    assert ticks == ["start", "stop"]  # the timer polls only while a task runs

    # A cancelled task shows its message and hands nothing on; an error is shown and raised.
    monitor.start(BackgroundTask(lambda progress: progress.report("never"), results.append), results.append)
    monitor.cancel()
    while monitor.running:
        monitor.poll()
        time.sleep(0.01)
    assert results == [2] and "nothing was added" in statuses[-1]

    def fail(progress):
        raise InputError("no target among the structures")

    monitor.start(BackgroundTask(fail, results.append), results.append)
    with pytest.raises(InputError, match="no target"):
        while True:
            monitor.poll()
            time.sleep(0.01)
    assert statuses[-1] == "no target among the structures" and not monitor.running and ticks[-1] == "stop"
