"""kill -9 consumers at every point of a delivery: at-least-once holds, nothing is lost or stuck.

Store level: 1,000 messages, two worker processes at a time (``workers/kill_worker.py``),
50 SIGKILLs in all: 30 that workers deal themselves at named points (5 at each of 6 points,
including "claim written but not committed" and "ack written but not committed") and 20
that the test sends from outside at random moments. Dead workers are replaced; leases are
0.5 s.

Scheduler level: the same with ``airq_nb.Scheduler`` consumers (``workers/sched_worker.py``,
1 s leases kept alive while handlers run), killed from outside at random moments.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import airq_nb

MESSAGES = 1000
POINTS = (
    "before_claim_commit",
    "after_claim",
    "in_handler",
    "after_handle",
    "before_ack_commit",
    "after_ack",
)
SELF_KILLS_PER_POINT = 5
EXTERNAL_KILLS = 20
LEASE_SECONDS = 0.5
DEADLINE_SECONDS = 150.0


def test_kill9_at_random_points_loses_nothing(
    tmp_path: Path, worker_command, reliability_report
) -> None:
    seed = int(os.environ.get("AIRQ_NB_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    db_path, out_dir = tmp_path / "kill9.db", tmp_path / "out"
    out_dir.mkdir()
    with airq_nb.open_store(db_path) as store:
        operation = store.atomic()
        for n in range(MESSAGES):
            operation.enqueue({"n": n})
        enqueued = set(operation.commit().message_ids)
    assert len(enqueued) == MESSAGES

    plans: list[tuple[str, str | None]] = [
        ("self", point) for point in POINTS for _ in range(SELF_KILLS_PER_POINT)
    ] + [("external", None)] * EXTERNAL_KILLS
    rng.shuffle(plans)
    lock = threading.Lock()
    faults: Counter[str] = Counter()
    problems: list[str] = []
    drained = threading.Event()
    started = time.monotonic()

    def run_slot(slot: int) -> None:
        while not drained.is_set() and time.monotonic() - started < DEADLINE_SECONDS:
            with lock:
                plan = plans.pop() if plans else None
            env = dict(os.environ, AIRQ_LEASE=str(LEASE_SECONDS), AIRQ_KILL_POINT="none")
            if plan is not None and plan[0] == "self":
                env.update(AIRQ_KILL_POINT=str(plan[1]), AIRQ_KILL_AT=str(rng.randint(1, 8)))
            stderr_path = out_dir / f"stderr-{slot}-{time.monotonic_ns()}.txt"
            with stderr_path.open("w") as stderr:
                proc = subprocess.Popen(
                    worker_command("kill_worker.py", db_path, out_dir),
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    text=True,
                )
                assert proc.stdout is not None
                if plan is not None and plan[0] == "external" and proc.stdout.readline():
                    time.sleep(rng.uniform(0.0, 0.25))
                    proc.send_signal(signal.SIGKILL)
                code = proc.wait()
                proc.stdout.close()
            with lock:
                if code == -signal.SIGKILL:
                    assert plan is not None, "a worker died of SIGKILL without a plan"
                    faults[plan[1] or "external"] += 1
                elif code == 0:
                    # A clean exit means nothing was queued or leased: the workload is done.
                    if plan is not None:
                        plans.append(plan)
                    drained.set()
                else:
                    problems.append(f"worker exited {code}: {stderr_path.read_text()[-2000:]}")
                    drained.set()

    slots = [threading.Thread(target=run_slot, args=(slot,)) for slot in range(2)]
    for thread in slots:
        thread.start()
    for thread in slots:
        thread.join()
    elapsed = time.monotonic() - started

    handled: Counter[int] = Counter()
    for log in out_dir.glob("handled-*.log"):
        for line in log.read_text().splitlines():
            handled[int(line.split()[0])] += 1
    self_kills = Counter(
        line.split()[0] for line in (out_dir / "kills.log").read_text().splitlines()
    )
    lost = enqueued - set(handled)
    duplicated = sum(handled.values()) - len(handled)
    total_faults = sum(faults.values())
    reliability_report(
        "kill -9 consumers (2 processes)",
        faults=total_faults,
        messages=MESSAGES,
        lost=len(lost),
        duplicated=duplicated,
        notes=f"{len(POINTS)} kill points + {faults['external']} external; seed {seed}; {elapsed:.0f} s",
    )

    assert not problems, problems
    assert elapsed < DEADLINE_SECONDS, f"workload not drained in {DEADLINE_SECONDS} s (seed {seed})"
    assert total_faults == len(POINTS) * SELF_KILLS_PER_POINT + EXTERNAL_KILLS, (faults, seed)
    assert self_kills == dict.fromkeys(POINTS, SELF_KILLS_PER_POINT), self_kills
    assert not lost, f"{len(lost)} messages never handled (seed {seed}): {sorted(lost)[:20]}"
    assert set(handled) == enqueued
    # A kill after the handler ran but before the ack committed must cause a redelivery:
    # proof that delivery is at-least-once, not at-most-once.
    assert duplicated >= faults["after_handle"] + faults["before_ack_commit"]
    with airq_nb.open_store(db_path) as store:
        counts = store.queue.counts()
        assert counts.total == 0, f"left in the queue: {counts.by_state} (seed {seed})"
        assert store.execute("PRAGMA integrity_check") == [("ok",)]


SCHED_MESSAGES = 1000
SCHED_ROUNDS = 10  # two kills a round, one per worker


def test_kill9_scheduler_consumers_loses_nothing(
    tmp_path: Path, worker_command, reliability_report
) -> None:
    seed = int(os.environ.get("AIRQ_NB_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    db_path, out_dir = tmp_path / "sched-kill9.db", tmp_path / "out"
    out_dir.mkdir()
    with airq_nb.open_store(db_path) as store:
        operation = store.atomic()
        for n in range(SCHED_MESSAGES):
            operation.enqueue({"n": n}, topic="work")
        operation.commit()

    def spawn() -> subprocess.Popen[str]:
        return subprocess.Popen(
            worker_command("sched_worker.py", db_path, out_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    kills, drained = 0, False
    started = time.monotonic()
    for _round in range(SCHED_ROUNDS):
        workers = [spawn(), spawn()]
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n", (
                worker.communicate()[1]
            )
        for worker in workers:
            time.sleep(rng.uniform(0.02, 0.25))
            worker.send_signal(signal.SIGKILL)
        for worker in workers:
            _out, err = worker.communicate(timeout=60)
            if worker.returncode == -signal.SIGKILL:
                kills += 1
            else:
                assert worker.returncode == 0, err
                drained = True
        if drained:
            break
    finishers = [spawn(), spawn()]
    results = [worker.communicate(timeout=DEADLINE_SECONDS) for worker in finishers]
    assert [worker.returncode for worker in finishers] == [0, 0], [err for _o, err in results]
    elapsed = time.monotonic() - started

    handled: Counter[int] = Counter()
    for log in out_dir.glob("handled-*.log"):
        handled.update(int(line) for line in log.read_text().split())
    lost = set(range(SCHED_MESSAGES)) - set(handled)
    duplicated = sum(handled.values()) - len(handled)
    reliability_report(
        "kill -9 Scheduler consumers (2 processes)",
        faults=kills,
        messages=SCHED_MESSAGES,
        lost=len(lost),
        duplicated=duplicated,
        notes=f"external kills at random moments; 1 s leases; seed {seed}; {elapsed:.0f} s",
    )
    assert kills == 2 * SCHED_ROUNDS, f"the workload drained after {kills} kills (seed {seed})"
    assert not lost, f"{len(lost)} messages never handled (seed {seed}): {sorted(lost)[:20]}"
    with airq_nb.open_store(db_path) as store:
        counts = store.queue.counts()
        assert counts.total == 0, f"left in the queue: {counts.by_state} (seed {seed})"
        assert store.execute("PRAGMA integrity_check") == [("ok",)]
        # The delivery log is complete: each ack committed with its row, in batches.
        acked = airq_nb.read_delivery_log(store).query("outcome == 'ok'")["message_id"]
        assert len(acked) == acked.nunique() == SCHED_MESSAGES, f"seed {seed}"
