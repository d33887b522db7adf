"""Work that runs off the GUI thread: a worker thread computes, the caller's thread finishes.

Slicer's GUI must not freeze during model loading, completion or dose prediction, and MRML nodes
may only be touched from the main thread. A :class:`BackgroundTask` therefore has two parts:
``work(progress)``, pure computation run in a worker thread (PyTorch and SimpleITK release the
GIL, so the GUI keeps running), and ``finish(output)``, run by whoever collects the result (the
GUI thread: it adds the nodes). Cancelling is cooperative: the work calls ``progress.check()``
between its steps, which raises :class:`Cancelled` once :meth:`BackgroundTask.cancel` was called;
a cancelled task never runs ``finish``, so nothing reaches the scene.

Scripts and tests call :meth:`BackgroundTask.run` instead: the same two parts, in the calling thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sparsert.errors import Cancelled, InputError, SparseRTError

Output = TypeVar("Output")
Result = TypeVar("Result")


class Progress:
    """What the work reports (a short text per step) and how it learns it was cancelled."""

    def __init__(self) -> None:
        self._text = ""
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    def report(self, text: str) -> None:
        """Start a step: ``text`` is what the user sees (e.g. "Completing the scribbles"); raises
        :class:`Cancelled` when the task was cancelled meanwhile."""
        self.check()
        with self._lock:
            self._text = text

    def cancel(self) -> None:
        self._cancel.set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled by the user; nothing was added to the scene")

    @property
    def text(self) -> str:
        with self._lock:
            return self._text


class BackgroundTask(Generic[Output, Result]):
    """``work(progress) -> output`` in a worker thread, then ``finish(output) -> result`` on collection."""

    def __init__(self, work: Callable[[Progress], Output], finish: Callable[[Output], Result]) -> None:
        self._work, self._finish = work, finish
        self.progress = Progress()
        self._thread: threading.Thread | None = None
        self._output: Output | None = None
        self._error: BaseException | None = None
        self._ended = threading.Event()
        self._collected = False

    def start(self) -> "BackgroundTask[Output, Result]":
        """Run the work in a daemon thread; poll :attr:`done`, then call :meth:`result`."""
        if self._thread is not None:
            raise InputError("this task was started already")
        self._thread = threading.Thread(target=self._run_work, name="sparsert-task", daemon=True)
        self._thread.start()
        return self

    def run(self) -> Result:
        """Work and finish in the calling thread (scripts, tests, batch runs)."""
        self._run_work()
        return self.result()

    @property
    def done(self) -> bool:
        """True once the work ended (finished, failed or cancelled); never blocks."""
        return self._ended.is_set()

    def cancel(self) -> None:
        """Ask the work to stop at its next step; :meth:`result` then raises :class:`Cancelled`."""
        self.progress.cancel()

    def result(self) -> Result:
        """The finished result; raises the work's error (or :class:`Cancelled`). Call once the task is done."""
        if not self.done:
            raise InputError("the task is still running: wait until done is True")
        if self._collected:
            raise InputError("the task's result was collected already")
        self._collected = True
        if self._error is not None:
            raise self._error
        self.progress.check()  # cancelled after the last step: still nothing reaches the scene
        return self._finish(self._output)

    def _run_work(self) -> None:
        try:
            self._output = self._work(self.progress)
        except BaseException as error:  # noqa: BLE001 - handed to the collecting thread, which re-raises it
            self._error = error
        self._ended.set()


class TaskMonitor:
    """One background task at a time for a module panel, which calls :meth:`poll` from a GUI timer.

    ``show_status(text)`` shows progress and outcomes; ``show_running(running)`` shows or hides the
    busy bar and Cancel button; ``timer`` (the panel's polling timer, anything with ``start()`` and
    ``stop()``, e.g. a ``qt.QTimer``) runs only while a task does. When the task ends, :meth:`poll`
    collects it on the calling (GUI) thread and hands the result to the ``on_result`` given to
    :meth:`start`; a cancelled task only shows its message, an error is shown and raised again (for
    the panel's error dialog).
    """

    def __init__(self, show_status: Callable[[str], None], show_running: Callable[[bool], None], timer=None) -> None:
        self._show_status, self._show_running, self._timer = show_status, show_running, timer
        self._task: BackgroundTask | None = None
        self._on_result: Callable | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, task: BackgroundTask, on_result: Callable) -> None:
        if self._task is not None:
            raise InputError("another step is still running: wait for it or cancel it")
        self._task, self._on_result = task.start(), on_result
        if self._timer is not None:
            self._timer.start()
        self._show_running(True)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._show_status("Cancelling after the current step...")

    def poll(self) -> None:
        if self._task is None:
            return
        self._show_status(self._task.progress.text)
        if not self._task.done:
            return
        task, on_result = self._task, self._on_result
        self._task = self._on_result = None
        if self._timer is not None:
            self._timer.stop()
        self._show_running(False)
        try:
            on_result(task.result())
        except Cancelled as cancelled:
            self._show_status(str(cancelled))
        except SparseRTError as error:
            self._show_status(str(error))
            raise
