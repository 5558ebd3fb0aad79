"""airq_nb's PostgreSQL backend beside procrastinate and pgqueuer, on one PostgreSQL server.

    python benchmarks/postgres_queue.py            # about a minute; --quick: a few seconds

Each system gets its own database on the same server: the one in ``AIRQ_NB_TEST_PG``, or
else a throwaway cluster started by ``scripts/_postgres.sh`` (as ``scripts/test`` does).
Measured, one message per commit unless said otherwise, same small JSON payload:

- enqueue/s: one producer, each message its own transaction;
- batch enqueue: N messages in one call (airq_nb ``atomic()``, procrastinate
  ``batch_defer_async``, pgqueuer's list ``enqueue``);
- deliver/s: drain N queued messages through a no-op handler, first to last handler call
  (airq_nb ``claim`` + ``ack``,
  also ``ack_and_claim`` and ``claim_many`` + ``ack_many``; procrastinate's worker with
  ``delete_jobs="always"``; pgqueuer's ``QueueManager`` in drain mode);
- Scheduler drain: the same backlog through ``Scheduler(store)`` at its defaults,
  ``listen_queue`` and ``run_until_idle`` (async and sync no-op handlers), first to last
  handler call, beside procrastinate's worker above;
- pickup latency: each system's consumer in its own process, idle and waiting (airq_nb
  ``wait_for_change`` around ``claim``, and a started ``Scheduler(store)``; procrastinate
  and pgqueuer their LISTEN/NOTIFY), all at once; every 20 ms each is sent one message, in
  turn; latency = handler start - enqueue time. Measured twice: as the machine is, and
  with the benchmark's own CPU load, ``--load`` busy processes (default: one per core)
  spinning in pure Python while the consumers wait and the parent sends.

Ratios are to procrastinate (``x procr.``): above 1 is faster (for latency: lower).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = {"city": "London", "pm2_5": 7.5, "pm10": 12.0}


def _database_url(base: str, name: str) -> str:
    """Create database ``name`` on the server of ``base`` (dropping an old one); its URL."""
    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(base)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://{params.get('user', 'postgres')}@/{name}?host={params['host']}"


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# -- pickup latency: a consumer process waits, the parent enqueues every 20 ms -------------

AIRQ_CONSUMER = """
import sys, time, airq_nb
store = airq_nb.open_store(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)
store.wait_for_change(0)  # listening from here on
print("ready", flush=True)
while True:
    delivery = store.claim(topics=["default"])
    if delivery is None:
        store.wait_for_change(5.0)
        continue
    out.write(f"{(time.time() - delivery.value['t']) * 1000}\\n")
    store.ack(delivery)
"""

AIRQ_SCHEDULER_CONSUMER = """
import asyncio, sys, time, airq_nb
store = airq_nb.open_store(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)

async def stamp(value):
    out.write(f"{(time.time() - value['t']) * 1000}\\n")

async def main():
    sched = airq_nb.Scheduler(store)
    sched.listen_queue(stamp, topic="stamp")
    sched.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

#: A busy process: the benchmark's own CPU load for the loaded pickup run.
BUSY = "while True: pass"

PROCRASTINATE_CONSUMER = """
import asyncio, logging, sys, time
from procrastinate import App, PsycopgConnector
logging.disable(logging.WARNING)
app = App(connector=PsycopgConnector(conninfo=sys.argv[1]))
out = open(sys.argv[2], "a", buffering=1)

@app.task(name="stamp")
async def stamp(t):
    out.write(f"{(time.time() - t) * 1000}\\n")

async def main():
    async with app.open_async():
        print("ready", flush=True)
        await app.run_worker_async(
            concurrency=1, listen_notify=True, delete_jobs="always", install_signal_handlers=False
        )

asyncio.run(main())
"""

PGQUEUER_CONSUMER = """
import asyncio, logging, sys, time
import psycopg
from pgqueuer import PgQueuer, PsycopgDriver
logging.disable(logging.WARNING)
out = open(sys.argv[2], "a", buffering=1)

async def main():
    conn = await psycopg.AsyncConnection.connect(sys.argv[1], autocommit=True)
    pgq = PgQueuer(PsycopgDriver(conn))

    @pgq.entrypoint("stamp")
    async def stamp(job):
        out.write(f"{(time.time() - float(job.payload.decode())) * 1000}\\n")

    print("ready", flush=True)
    await pgq.run(batch_size=1)

asyncio.run(main())
"""


def pickup_latencies(
    systems: dict[str, tuple[str, str, Callable[[float], None]]], count: int, *, load: int = 0
) -> dict[str, list[float]]:
    """Latencies (ms) of ``count`` messages per system, each consumer in its own process.

    ``systems`` maps a name to (consumer code, URL, ``send(t)``). Every 20 ms each system
    is sent one message, in turn, so a busy moment of the machine hits them alike. With
    ``load``, that many busy processes spin meanwhile.
    """
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
    try:
        return _pickups(systems, count)
    finally:
        for process in busy:
            process.kill()
            process.wait()


def _pickups(
    systems: dict[str, tuple[str, str, Callable[[float], None]]], count: int
) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        outs = {name: Path(folder) / f"{name}.txt" for name in systems}
        processes = {
            name: subprocess.Popen(
                [sys.executable, "-c", consumer, url, str(outs[name])],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for name, (consumer, url, _send) in systems.items()
        }
        try:
            for process in processes.values():
                assert process.stdout is not None and process.stdout.readline().strip() == "ready"
            time.sleep(1.0)  # let them reach their waits
            for _ in range(count):
                for _consumer, _url, send in systems.values():
                    send(time.time())
                time.sleep(0.02)
            deadline = time.monotonic() + 30
            while any(_lines(out) < count for out in outs.values()):
                if time.monotonic() > deadline:
                    got = {name: _lines(out) for name, out in outs.items()}
                    raise RuntimeError(f"messages received of {count}: {got}")
                time.sleep(0.05)
            return {name: [float(v) for v in out.read_text().split()] for name, out in outs.items()}
        finally:
            for process in processes.values():
                process.kill()
                process.wait()


def _lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


# -- the systems ---------------------------------------------------------------------------


def bench_airq_nb(url: str, n: int, batch: int) -> dict[str, Any]:
    import airq_nb

    result: dict[str, Any] = {}
    with airq_nb.open_store(url) as store:
        result["enqueue"] = n / _timed(lambda: [store.enqueue(PAYLOAD) for _ in range(n)])

        def enqueue_batch() -> None:
            atomic = store.atomic()
            for _ in range(batch):
                atomic.enqueue(PAYLOAD)
            atomic.commit()

        result["batch"] = batch / _timed(enqueue_batch)
        store.queue.purge()

        def fill() -> None:
            for _ in range(0, n, batch):
                enqueue_batch()

        def claim_ack() -> None:
            while (delivery := store.claim()) is not None:
                store.ack(delivery)

        def ack_and_claim() -> None:
            delivery = store.claim()
            while delivery is not None:
                _, delivery = store.ack_and_claim(delivery)

        def claim_many() -> None:
            while deliveries := store.claim_many(100):
                store.ack_many(deliveries)

        for name, drain in (
            ("deliver", claim_ack),
            ("deliver ack_and_claim", ack_and_claim),
            ("deliver claim_many(100)", claim_many),
        ):
            fill()
            total = store.queue.counts().total
            result[name] = total / _timed(drain)
            assert store.queue.counts().total == 0

        for kind in ("async", "sync"):
            fill()
            result[f"Scheduler drain ({kind})"] = scheduler_drain(store, kind == "async")
            assert store.queue.counts().total == 0

    return result


def scheduler_drain(store: Any, is_async: bool) -> float:
    """Messages per second through ``Scheduler(store)`` at its defaults and ``run_until_idle``,
    first to last handler call (as procrastinate's worker is measured)."""
    import airq_nb

    queued = store.queue.counts().total
    handled: list[float] = []
    sched = airq_nb.Scheduler(store)
    if is_async:

        async def noop(value: Any) -> None:
            handled.append(time.perf_counter())

        sched.listen_queue(noop)
    else:
        sched.listen_queue(lambda value: handled.append(time.perf_counter()))
    try:
        summary = asyncio.run(sched.run_until_idle(timeout=600))
    finally:
        sched.close()
    assert summary.delivered == queued, summary
    return _handler_rate(handled, queued)


def bench_procrastinate(url: str, n: int, batch: int) -> dict[str, Any]:
    from procrastinate import App, PsycopgConnector

    logging.disable(logging.WARNING)
    app = App(connector=PsycopgConnector(conninfo=url))

    handled: list[float] = []

    @app.task(name="noop")
    async def noop(**payload: Any) -> None:
        handled.append(time.perf_counter())

    @app.task(name="stamp")
    async def stamp(t: float) -> None:
        return None

    result: dict[str, Any] = {}

    async def run() -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            started = time.perf_counter()
            for _ in range(n):
                await noop.defer_async(**PAYLOAD)
            result["enqueue"] = n / (time.perf_counter() - started)
            started = time.perf_counter()
            await noop.batch_defer_async(*([PAYLOAD] * batch))
            result["batch"] = batch / (time.perf_counter() - started)
            # Drain what is queued (n + batch jobs) with one worker, as airq_nb's consumer.
            await app.run_worker_async(
                wait=False, concurrency=1, delete_jobs="always", install_signal_handlers=False
            )
            result["deliver"] = _handler_rate(handled, n + batch)

    asyncio.run(run())
    return result


def _handler_rate(handled: list[float], queued: int) -> float:
    """Messages per second between the first and the last handler call: a worker's own
    start-up and shut-down are left out (airq_nb's loop has none to leave out)."""
    if len(handled) != queued:
        raise RuntimeError(f"the worker handled {len(handled)} of {queued} messages")
    return (queued - 1) / (handled[-1] - handled[0])


@contextlib.contextmanager
def _async_sender(system: str, url: str) -> Iterator[Callable[[float], None]]:
    """``send(t)`` for procrastinate or pgqueuer: their async API on a loop in a thread."""
    import queue
    import threading

    requests: queue.Queue[float | None] = queue.Queue()
    sent: queue.Queue[bool] = queue.Queue()

    async def producer() -> None:
        if system == "procrastinate":
            from procrastinate import App, PsycopgConnector

            app = App(connector=PsycopgConnector(conninfo=url))

            @app.task(name="stamp")
            async def stamp(t: float) -> None:
                return None

            async with app.open_async():
                while (t := await asyncio.to_thread(requests.get)) is not None:
                    await stamp.defer_async(t=t)
                    sent.put(True)
        else:
            import psycopg
            from pgqueuer import PsycopgDriver, Queries

            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                queries = Queries(PsycopgDriver(conn))
                while (t := await asyncio.to_thread(requests.get)) is not None:
                    await queries.enqueue("stamp", str(t).encode())
                    sent.put(True)

    thread = threading.Thread(target=asyncio.run, args=(producer(),))
    thread.start()

    def send(t: float) -> None:
        requests.put(t)
        sent.get(timeout=30)

    try:
        yield send
    finally:
        requests.put(None)
        thread.join(30)


def bench_pgqueuer(url: str, n: int, batch: int) -> dict[str, Any]:
    import json

    import psycopg
    from pgqueuer import PgQueuer, PsycopgDriver, Queries
    from pgqueuer.types import QueueExecutionMode

    logging.disable(logging.WARNING)
    payload = json.dumps(PAYLOAD).encode()
    result: dict[str, Any] = {}

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            queries = Queries(PsycopgDriver(conn))
            await queries.install()
            started = time.perf_counter()
            for _ in range(n):
                await queries.enqueue("noop", payload)
            result["enqueue"] = n / (time.perf_counter() - started)
            started = time.perf_counter()
            await queries.enqueue(["noop"] * batch, [payload] * batch, [0] * batch)
            result["batch"] = batch / (time.perf_counter() - started)

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            pgq = PgQueuer(PsycopgDriver(conn))

            handled: list[float] = []

            @pgq.entrypoint("noop")
            async def noop(job: Any) -> None:
                handled.append(time.perf_counter())

            await pgq.run(mode=QueueExecutionMode.drain, batch_size=10)
            result["deliver"] = _handler_rate(handled, n + batch)

    asyncio.run(run())
    return result


# -- the table -------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _table(results: dict[str, dict[str, Any]]) -> str:
    reference = results["procrastinate"]
    columns = ["enqueue", "batch", "deliver"]
    lines = [
        "| system | enqueue/s | x procr. | batch enqueue msg/s | x procr. | deliver/s | x procr. "
        "| pickup p50 ms | pickup p99 ms | x procr. (p99) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, row in results.items():
        cells = [system]
        for column in columns:
            cells += [f"{row[column]:,.0f}", f"{row[column] / reference[column]:.2f}"]
        p50, p99 = _percentile(row["latency"], 50), _percentile(row["latency"], 99)
        ref99 = _percentile(reference["latency"], 99)
        cells += [f"{p50:.1f}", f"{p99:.1f}", f"{ref99 / p99:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    extra = results["airq_nb"]
    for name in (
        "Scheduler drain (async)",
        "Scheduler drain (sync)",
        "deliver ack_and_claim",
        "deliver claim_many(100)",
    ):
        lines.append(
            f"\nairq_nb {name}: {extra[name]:,.0f}/s "
            f"({extra[name] / reference['deliver']:.2f}x procrastinate's deliver)"
        )
    return "\n".join(lines)


def _pickup_table(quiet: dict[str, list[float]], loaded: dict[str, list[float]], load: int) -> str:
    lines = [
        f"| consumer | p50 ms | p99 ms | max ms | p50 ms, {load} busy | p99 ms, {load} busy "
        f"| max ms, {load} busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in quiet:
        cells = [system]
        for latencies in (quiet[system], loaded[system]):
            cells += [
                f"{_percentile(latencies, 50):.1f}",
                f"{_percentile(latencies, 99):.1f}",
                f"{max(latencies):.1f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="messages for enqueue and deliver")
    parser.add_argument("--batch", type=int, default=1000, help="messages in the batch enqueue")
    parser.add_argument("--pickups", type=int, default=200, help="messages for pickup latency")
    parser.add_argument("--quick", action="store_true", help="small counts, a few seconds")
    parser.add_argument(
        "--load", type=int, default=os.cpu_count() or 2, help="busy processes, loaded pickups"
    )
    args = parser.parse_args()
    if not os.environ.get("AIRQ_NB_TEST_PG"):
        # Start a throwaway server exactly as scripts/test does, and run again inside it.
        script = f'. scripts/_postgres.sh && start_test_postgres && "{sys.executable}" "$@"'
        status = subprocess.call(["bash", "-c", script, "bash", *sys.argv], cwd=ROOT)
        raise SystemExit(status)
    if args.quick:
        args.n, args.batch, args.pickups = 300, 300, 50
    base = os.environ["AIRQ_NB_TEST_PG"]
    results: dict[str, dict[str, Any]] = {}
    urls: dict[str, str] = {}
    for system, bench in (
        ("airq_nb", bench_airq_nb),
        ("procrastinate", bench_procrastinate),
        ("pgqueuer", bench_pgqueuer),
    ):
        urls[system] = _database_url(base, f"bench_{system}")
        results[system] = bench(urls[system], args.n, args.batch)
        print(f"{system}: throughput done", file=sys.stderr)
    import airq_nb

    with contextlib.ExitStack() as stack:
        store = stack.enter_context(airq_nb.open_store(urls["airq_nb"]))
        systems = {
            "airq_nb": (AIRQ_CONSUMER, urls["airq_nb"], lambda t: store.enqueue({"t": t})),
            "airq_nb Scheduler": (
                AIRQ_SCHEDULER_CONSUMER,
                urls["airq_nb"],
                lambda t: store.enqueue({"t": t}, topic="stamp"),
            ),
            "procrastinate": (
                PROCRASTINATE_CONSUMER,
                urls["procrastinate"],
                stack.enter_context(_async_sender("procrastinate", urls["procrastinate"])),
            ),
            "pgqueuer": (
                PGQUEUER_CONSUMER,
                urls["pgqueuer"],
                stack.enter_context(_async_sender("pgqueuer", urls["pgqueuer"])),
            ),
        }
        before = os.getloadavg()
        quiet = pickup_latencies(systems, args.pickups)
        loaded = pickup_latencies(systems, args.pickups, load=args.load)
        for system in results:
            results[system]["latency"] = quiet[system]
    print(
        f"\n{args.n} messages (enqueue, deliver), batch of {args.batch}, {args.pickups} pickups; "
        f"PostgreSQL on a Unix socket, fsync off; {os.cpu_count()} cores, load average "
        f"{before[0]:.2f} before the pickups.\n"
    )
    print(_table(results))
    print(f"\nPickup latency, as the machine is and with {args.load} busy processes:\n")
    print(_pickup_table(quiet, loaded, args.load))


if __name__ == "__main__":
    main()
