"""The demo under several visitors, through gradio_client against the launched app (the real tiny pipeline).

An example's first click queues on the model slot like any run, streams and is then cached; cancelling a job stops
the sampler within a denoising step and frees the slot at once; a run's output folder is deleted when it ends.
"""

import os
import time

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.utils import Status  # noqa: E402


@pytest.fixture(scope="module")
def server(assets, tmp_path_factory):
    import app
    from ui import example_cache, examples

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(examples, "ASSETS", str(assets))
        mp.setattr(example_cache, "CACHE_ROOT", str(tmp_path_factory.mktemp("example_cache")))
        mp.setitem(example_cache.EXAMPLE_SAMPLING, "steps", 12)  # a few seconds: long enough to be stopped
        demo = app.launch(port=None, block=False)
        yield demo
        demo.close()


@pytest.fixture(scope="module")
def pipe(server):
    from ui.model import get_pipeline

    return get_pipeline()


@pytest.fixture
def sampler_log(pipe, monkeypatch):
    """(task, when the sampler's generator ended) for every ``pipe.stream`` call."""
    log, stream = [], pipe.stream

    def logged(*args, **kwargs):
        entry = {"task": kwargs.get("task"), "ended": None}
        log.append(entry)
        try:
            yield from stream(*args, **kwargs)
        finally:
            entry["ended"] = time.monotonic()

    monkeypatch.setattr(pipe, "stream", logged)
    return log


def _client(server):
    return Client(server.local_url, verbose=False, download_files=False)


def _long_orbit(client, assets, steps=50, seconds=10.0):
    """A silent orbit of 16 segments at ``steps`` steps each: it runs far longer than any test waits."""
    camera = (assets / "cameras" / "sweep.json").read_text()
    return client.submit(handle_file(str(assets / "portraits" / "face.png")), None, camera, seconds, True,
                         0, False, steps, 3.0, 1.0, 1.0, 1.0, api_name="/orbit")


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


RUNNING = (Status.PROCESSING, Status.PROGRESS, Status.ITERATING)


def _processing(job):
    return job.status().code in RUNNING and len(job.outputs()) >= 1


def test_cancel_stops_the_sampler_within_a_step_and_frees_the_slot(server, assets, sampler_log, pipe):
    visitor = _client(server)
    job = _long_orbit(visitor, assets)
    _wait(lambda: _processing(job), 120, "the orbit to start")
    _wait(lambda: len(sampler_log) == 1, 30, "the sampler to start")
    time.sleep(1.5)  # well inside the first segment (50 steps)
    asked = time.monotonic()
    job.cancel()  # gradio_client's own request gives up after 5 s: it must come back well before
    answered = time.monotonic() - asked
    _wait(lambda: sampler_log[0]["ended"] is not None, 5, "the sampler to stop")
    assert sampler_log[0]["ended"] - asked < 2.0, "the sampler finished its segment instead of stopping"
    assert answered < 3.0, f"cancel took {answered:.1f} s"

    # The slot is free at once, and the next visitor's run says nothing about someone else's generation.
    other = _client(server)
    result = other.predict(handle_file(str(assets / "portraits" / "face.png")),
                           handle_file(str(assets / "audio" / "speech.wav")), True, 0, False, 1, 3.0, 1.0, 1.0, 1.0,
                           api_name="/portrait")
    assert "Done" in result[3]


def test_an_examples_first_run_queues_streams_is_stoppable_then_is_cached(server, assets, sampler_log):
    from starcaster.video import probe

    busy = _client(server)
    long_job = _long_orbit(busy, assets)
    _wait(lambda: _processing(long_job), 120, "the orbit to start")

    # An example clicked meanwhile waits its turn in the queue (it used to run beside it, outside the queue).
    first = _client(server)
    example = first.submit(0, api_name="/portrait_example")
    _wait(lambda: example.status().code in (Status.IN_QUEUE, *RUNNING), 30, "the example to be queued")
    time.sleep(1.0)
    assert example.status().code == Status.IN_QUEUE, "the example did not wait for the model slot"
    assert [e["task"] for e in sampler_log] == ["orbit"]
    long_job.cancel()

    # It streams like a run, and Stop (cancel) reaches it: nothing is stored.
    updates = []
    _wait(lambda: len(example.outputs()) >= 1 and len(sampler_log) == 2, 60, "the example to start")
    time.sleep(1.0)
    asked = time.monotonic()
    example.cancel()
    _wait(lambda: sampler_log[-1]["ended"] is not None, 5, "the example's sampler to stop")
    assert sampler_log[-1]["ended"] - asked < 2.0
    assert [e["task"] for e in sampler_log] == ["orbit", "portrait"]

    # Asked again, it runs to the end, streamed, and is stored...
    for update in first.submit(0, api_name="/portrait_example"):
        updates.append(update)
    video, mp4, seed, status = updates[-1]
    assert updates[0][3].startswith("Starting") and len(updates) >= 2, "the example did not run like a tab's run"
    assert "cached" in status and seed == 0
    assert probe(mp4["path"])["has_audio"]
    assert [e["task"] for e in sampler_log] == ["orbit", "portrait", "portrait"]

    # ... so that anyone's next click shows it without the model.
    again = _client(server).predict(0, api_name="/portrait_example")
    assert [e["task"] for e in sampler_log] == ["orbit", "portrait", "portrait"], "a cached example ran the model"
    assert again[3] == status and again[1]["path"].endswith(".mp4")  # the stored video, not a new run


def test_a_runs_output_folder_is_deleted_when_it_ends(server, assets, sampler_log):
    from ui import streaming

    stale = os.path.join(streaming.OUTPUT_ROOT, "0" * 32)  # what a crash would leave behind
    os.makedirs(stale, exist_ok=True)
    os.utime(stale, (time.time() - 2 * streaming.OUTPUT_MAX_AGE_SECONDS,) * 2)
    before = set(os.listdir(streaming.OUTPUT_ROOT)) - {"0" * 32}
    visitor = Client(server.local_url, verbose=False)  # downloads the result: it is still served after the run
    result = visitor.predict(handle_file(str(assets / "portraits" / "face.png")),
                             handle_file(str(assets / "audio" / "speech.wav")), True, 0, False, 1, 3.0, 1.0, 1.0, 1.0,
                             api_name="/portrait")
    assert os.path.getsize(result[1]) > 0
    left = set(os.listdir(streaming.OUTPUT_ROOT)) - before
    assert not left, f"run folders left behind: {left}"
    assert not os.path.exists(stale), "an hour-old run folder was not pruned"


def test_a_queued_visitor_is_told_their_place_not_a_guessed_time(server, assets):
    """Gradio guessed each wait from the average duration of the event's earlier runs, whatever their length (3.5x
    too high in the issue); the model slot now reports the place in the queue and no time."""
    face, camera = handle_file(str(assets / "portraits" / "face.png")), (assets / "cameras" / "sweep.json").read_text()
    # A short finished orbit gives Gradio an average orbit to extrapolate from.
    _client(server).predict(face, None, camera, 0.6, True, 0, False, 1, 3.0, 1.0, 1.0, 1.0, api_name="/orbit")
    busy = _long_orbit(_client(server), assets)
    waiting = None
    try:
        _wait(lambda: _processing(busy), 120, "the long orbit to start")
        waiting = _long_orbit(_client(server), assets)
        _wait(lambda: waiting.status().code == Status.IN_QUEUE, 30, "the second orbit to be queued")
        time.sleep(1.0)
        status = waiting.status()
        assert status.code == Status.IN_QUEUE and status.rank == 0 and status.queue_size == 1, status
        assert status.eta is None, f"a guessed wait of {status.eta:.1f} s for a job queued behind 16 segments"
    finally:
        for job in (waiting, busy):
            if job is not None:
                job.cancel()
