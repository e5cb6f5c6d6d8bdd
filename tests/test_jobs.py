"""Dependent jobs over processes (the demo's training runs on two cores): each job
starts only after the jobs it needs, results come back by name, a failure is raised,
and jobs that can never start are refused."""

import json
import time
from pathlib import Path

import pytest

from genact.world.jobs import run_jobs

JOBS = {"a": (), "b": ("a",), "c": (), "d": ("b", "c")}


def record(name: str, log: Path) -> str:
    """A job that notes when it started and ended (picklable: spawned workers import it)."""
    start = time.time()
    if name == "boom":
        raise RuntimeError("job boom failed")
    time.sleep(0.2)
    (log / f"{name}.json").write_text(json.dumps([start, time.time()]))
    return name.upper()


@pytest.mark.parametrize("workers", [1, 2])
def test_each_job_starts_after_the_jobs_it_needs(tmp_path, workers):
    done = run_jobs(record, JOBS, (tmp_path,), workers=workers)
    assert done == {"a": "A", "b": "B", "c": "C", "d": "D"}
    times = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in JOBS}
    for name, deps in JOBS.items():
        for dep in deps:
            assert times[name][0] >= times[dep][1], (name, dep)


def meet(name: str, log: Path) -> bool:
    """A job that notes it started and waits (at most 60 s) for its partner to start:
    True only when the two ran side by side."""
    (log / f"{name}.started").touch()
    partner = log / ("c.started" if name == "a" else "a.started")
    deadline = time.monotonic() + 60
    while not partner.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return partner.exists()


def test_with_two_workers_ready_jobs_run_side_by_side(tmp_path):
    # each waits for the other, so neither can finish first and leave its worker
    # free to take the other job (a worker that starts slowly made a timing check flaky)
    assert run_jobs(meet, {"a": (), "c": ()}, (tmp_path,), workers=2) == {"a": True, "c": True}


def test_with_one_worker_jobs_run_in_the_given_order_among_ready_ones(tmp_path):
    run_jobs(record, {"c": (), "a": (), "b": ("a",)}, (tmp_path,), workers=1)
    starts = {n: json.loads((tmp_path / f"{n}.json").read_text())[0] for n in "abc"}
    assert sorted(starts, key=starts.get) == ["c", "a", "b"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_and_its_dependants_never_start(tmp_path, workers):
    with pytest.raises(RuntimeError, match="job boom failed"):
        run_jobs(record, {"boom": (), "after": ("boom",)}, (tmp_path,), workers=workers)
    assert not (tmp_path / "after.json").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_that_can_never_start_are_refused(tmp_path, workers):
    with pytest.raises(ValueError, match="not given"):
        run_jobs(record, {"a": ("missing",)}, (tmp_path,), workers=workers)
    with pytest.raises(ValueError, match="wait on each other"):
        run_jobs(record, {"a": ("b",), "b": ("a",)}, (tmp_path,), workers=workers)
    assert not list(tmp_path.iterdir())


def test_the_demo_runs_what_its_rows_start_from_and_nothing_else():
    from genact.world.demo import DEPENDS, demo_jobs
    from genact.world.demo_runs import METHODS

    assert set(DEPENDS) == set(METHODS)
    assert demo_jobs({"regen-b2n"}) == {"rest": (), "regen": ("rest",), "regen-b2n": ("regen",)}
    assert list(demo_jobs({"2-shot", "clip"})) == ["rest", "clip", "2-shot"]
    assert demo_jobs({"supervised"}) == {"supervised": ()}
