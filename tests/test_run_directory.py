"""The run directory of a training command: its lock, held by exactly one of many processes that race for it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys

from scratchlm.model_cards.run_record import RUN_LOCK_FILE
from scratchlm.training.run import RunDirectory

PROCESSES = 20
ROUNDS = 40


def _race(path: str, barrier, rounds: int, results) -> None:
    """One racer: in each round, wait for all, try to take the lock of the round's directory, wait for all again,
    release it. Reports, per round, "held", "refused" or the unexpected error, and the "taking over" messages."""
    taken_over = []
    handler = logging.Handler()
    handler.emit = lambda record: taken_over.append(record.getMessage())
    logging.getLogger("scratchlm.training.run").addHandler(handler)
    outcomes = []
    for round_ in range(rounds):
        barrier.wait()
        run_dir = None
        try:
            run_dir = RunDirectory(f"{path}/{round_}", {"seed": 1}, overwrite=False)
            run_dir.lock()
            outcomes.append("held")
        except FileExistsError as error:
            outcomes.append("refused" if "another run" in str(error) else repr(error))
        except Exception as error:  # reported to the test, which names it
            outcomes.append(repr(error))
        barrier.wait()  # every racer has tried before the holder lets go
        try:
            if outcomes[-1] == "held":
                run_dir.unlock()
        except Exception as error:  # two holders: the second finds the directory gone
            outcomes[-1] = repr(error)
    results.put((outcomes, [m for m in taken_over if "taking over the lock" in m]))


def race_for_locks(tmp_path, rounds: int = ROUNDS) -> tuple[list[int], list[str]]:
    """(how many racers held the lock, per round; every 'taking over' message logged)."""
    context = multiprocessing.get_context("fork")  # no re-import of torch in each of the racers
    barrier, results = context.Barrier(PROCESSES, timeout=60), context.Queue()
    racers = [context.Process(target=_race, args=(str(tmp_path), barrier, rounds, results)) for _ in range(PROCESSES)]
    for racer in racers:
        racer.start()
    try:
        reports = [results.get(timeout=60 + 5 * rounds) for _ in racers]
    finally:
        for racer in racers:
            racer.join(timeout=10)
            if racer.exitcode is None:
                racer.kill()
    outcomes = [outcome for outcomes, _ in reports for outcome in outcomes]
    assert set(outcomes) <= {"held", "refused"}, sorted(set(outcomes) - {"held", "refused"})
    holders = [sum(outcomes[round_] == "held" for outcomes, _ in reports) for round_ in range(rounds)]
    return holders, [message for _, messages in reports for message in messages]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_many_processes_racing_for_a_free_directory_leave_exactly_one_holder(tmp_path):
    holders, taken_over = race_for_locks(tmp_path)
    assert holders == [1] * ROUNDS
    assert taken_over == []  # a lock being written is never mistaken for one left by a dead process


def test_many_processes_racing_to_take_over_a_dead_lock_leave_exactly_one_holder_and_one_message(tmp_path):
    pid = dead_pid()
    for round_ in range(ROUNDS):
        (tmp_path / str(round_)).mkdir()
        (tmp_path / str(round_) / RUN_LOCK_FILE).write_text(f"{pid}\n")
    holders, taken_over = race_for_locks(tmp_path)
    assert holders == [1] * ROUNDS
    assert len(taken_over) == ROUNDS and all(f"(pid {pid})" in message for message in taken_over)


def test_the_lock_holds_the_pid_of_its_holder_and_is_removed_on_release(tmp_path):
    with RunDirectory(tmp_path / "run", {"seed": 1}, overwrite=False):
        assert (tmp_path / "run" / RUN_LOCK_FILE).read_text() == f"{os.getpid()}\n"
        assert [path.name for path in (tmp_path / "run").iterdir()] == [RUN_LOCK_FILE]  # no temporary file left
    assert not (tmp_path / "run").exists()  # the run made the directory and left nothing in it
