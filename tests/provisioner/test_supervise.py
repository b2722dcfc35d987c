"""runstack's supervisor: a crashed child is restarted with backoff, the others keep running."""

from pathlib import Path

from provisioner.supervise import Child, Supervisor


class FakeProcess:
    def __init__(self, argv):
        self.argv = argv
        self.returncode = None
        self.terminated = False

    def poll(self):
        return self.returncode

    def terminate(self):
        self.terminated = True
        self.returncode = -15

    def wait(self, timeout=None):
        return self.returncode

    def kill(self):
        self.returncode = -9


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _supervisor():
    clock, lines, spawned = Clock(), [], []

    def spawn(argv):
        spawned.append(FakeProcess(argv))
        return spawned[-1]

    sup = Supervisor(children=[Child("web", ["web"]), Child("worker", ["worker"]), Child("beat", ["beat"])],
                     log=lines.append, spawn=spawn, clock=clock)
    sup.start_all()
    return sup, clock, lines, spawned


def test_a_crashed_worker_is_restarted_with_growing_backoff_while_web_keeps_running():
    sup, clock, lines, spawned = _supervisor()
    web, worker = sup.children[0], sup.children[1]
    web_process = web.process
    delays = []
    for _ in range(4):
        worker.process.returncode = 1  # dies at once, again and again
        clock.now += 2
        sup.tick()
        assert worker.restart_at is not None
        delays.append(worker.restart_at - clock.now)
        assert "worker exited with code 1" in lines[-1] and "the rest keep running" in lines[-1]
        clock.now = worker.restart_at
        sup.tick()
        assert worker.process.poll() is None
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert web.process is web_process and web_process.poll() is None and not web_process.terminated
    assert worker.restarts == 4 and sum(1 for p in spawned if p.argv == ["worker"]) == 5
    assert "worker: restarting (restart 4)" in lines


def test_backoff_is_capped_and_resets_after_a_healthy_run():
    sup, clock, _, _ = _supervisor()
    beat = sup.children[2]
    assert sup.delay_for(20) == 60.0
    beat.failures_in_a_row = 7
    clock.now += 3600  # ran for an hour, then crashed: start again from the shortest delay
    beat.process.returncode = 2
    sup.tick()
    assert beat.restart_at - clock.now == 1.0


def test_stop_all_terminates_every_live_child():
    sup, _, _, spawned = _supervisor()
    sup.stop_all(grace=0.1)
    assert all(p.terminated for p in spawned)


def test_the_embedded_worker_consumes_every_queue_a_task_is_routed_to():
    """A task declared on a queue no embedded worker reads would wait for ever under `make run`."""
    from provisioner.celery import app
    from provisioner.management.commands.runstack import WORKER_QUEUES

    app.loader.import_default_modules()
    routed = {task.queue for task in app.tasks.values() if getattr(task, "queue", None)}
    assert routed <= set(WORKER_QUEUES), routed - set(WORKER_QUEUES)
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    assert all(f"-Q {q}" in procfile for q in routed)


def _ordered_start(web_answers, *, web_exits_after=None):
    """A supervisor whose web child answers ``web_answers`` to its readiness checks, in turn."""
    clock, lines, spawned, sleeps = Clock(), [], [], []
    answers = iter(web_answers)

    def spawn(argv):
        spawned.append(FakeProcess(argv))
        return spawned[-1]

    def sleep(seconds):
        sleeps.append([p.argv for p in spawned])  # who was running while we waited
        clock.now += seconds
        if web_exits_after is not None and len(sleeps) >= web_exits_after:
            spawned[0].returncode = 1

    sup = Supervisor(children=[Child("web", ["web"], ready=lambda: next(answers, False)), Child("worker", ["worker"]),
                               Child("beat", ["beat"])], log=lines.append, spawn=spawn, clock=clock, sleep=sleep,
                     ready_timeout=10.0, ready_poll=1.0)
    sup.start_all()
    return spawned, sleeps, lines


def test_the_web_server_starts_alone_and_the_others_once_it_answers():
    spawned, sleeps, lines = _ordered_start([False, False, True])
    assert sleeps == [[["web"]], [["web"]]]  # nothing else started while the web server loaded
    assert [p.argv for p in spawned] == [["web"], ["worker"], ["beat"]]
    assert lines == []


def test_a_web_server_that_never_answers_or_exits_does_not_hold_the_others_back():
    spawned, sleeps, lines = _ordered_start([])
    assert len(sleeps) == 10 and [p.argv for p in spawned] == [["web"], ["worker"], ["beat"]]
    assert lines == ["web: not answering after 10 s; starting the others anyway"]
    spawned, sleeps, lines = _ordered_start([], web_exits_after=2)
    assert len(sleeps) == 2 and [p.argv for p in spawned] == [["web"], ["worker"], ["beat"]]
    assert lines == []  # the exit is tick()'s to report and restart
