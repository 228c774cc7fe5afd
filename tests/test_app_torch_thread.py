"""``python app.py`` samples on its main thread (ui/torch_thread.py); everything else keeps a thread of its own."""

import threading

import pytest

from ui import torch_thread
from ui.streaming import SamplerAhead


@pytest.fixture
def claimed():
    assert threading.current_thread() is threading.main_thread(), "pytest runs tests on the main thread"
    torch_thread.claim()
    yield
    torch_thread.release()


def _serve_while(worker: threading.Thread):
    """Serve jobs here, on the main thread, until ``worker`` has finished."""
    worker.start()
    torch_thread.serve(stop=lambda: not worker.is_alive(), poll=0.02)
    worker.join()


def test_without_a_claim_a_job_gets_a_thread_of_its_own():
    ran = []
    job = torch_thread.start(lambda: ran.append(threading.current_thread()), name="probe")
    assert job.join(5)
    assert ran and ran[0] is not threading.main_thread() and ran[0].name == "probe"


def test_a_claimed_main_thread_runs_the_jobs_in_order_and_survives_a_failing_one(claimed):
    ran = []

    def fail():
        raise RuntimeError("one visitor's bad run")

    def visitors():  # Gradio's handler threads
        jobs = [torch_thread.start(ran.append, 1), torch_thread.start(fail),
                torch_thread.start(lambda: ran.append(threading.current_thread()))]
        assert all(job.join(5) for job in jobs)

    _serve_while(threading.Thread(target=visitors))
    assert ran == [1, threading.main_thread()]


def test_only_the_claimed_main_thread_serves():
    with pytest.raises(RuntimeError, match="claim"):
        torch_thread.serve(stop=lambda: True)
    errors = []

    def claim_elsewhere():
        try:
            torch_thread.claim()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=claim_elsewhere)
    t.start()
    t.join()
    assert errors and not torch_thread.on_main_thread()


def test_the_sampler_runs_on_the_main_thread_while_a_handler_streams(claimed):
    where, got = [], []

    def start(is_stopped):
        for k in range(3):
            where.append(threading.current_thread())
            yield k

    def handler():
        got.extend(SamplerAhead(start))

    _serve_while(threading.Thread(target=handler))
    assert got == [0, 1, 2]
    assert where == [threading.main_thread()] * 3


def test_ctrl_c_while_sampling_stops_the_serving_loop_and_reaches_the_handler(claimed):
    seen = []

    def start(is_stopped):
        raise KeyboardInterrupt

    def handler():
        try:
            next(SamplerAhead(start))
        except KeyboardInterrupt:
            seen.append("handler")

    worker = threading.Thread(target=handler)
    worker.start()
    with pytest.raises(KeyboardInterrupt):
        torch_thread.serve(poll=0.02)
    worker.join(5)
    assert seen == ["handler"]
