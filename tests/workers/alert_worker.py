"""A child process for the alert tests: evaluates a store's rules, racing or dying on purpose.

alert_worker.py evaluate-and-die STORE   evaluate (commit), then SIGKILL itself before any send
alert_worker.py claim-and-die STORE      lease the first alerts.send message, then SIGKILL
alert_worker.py race STORE ROUNDS        wait for KV ("test", "go"), evaluate ROUNDS times,
                                         print how many transitions it made
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import airq_nb
from airq_nb.alerts import SEND_TOPIC


def main() -> None:
    mode, location = sys.argv[1], sys.argv[2]
    store = airq_nb.open_store(location)
    if mode == "evaluate-and-die":
        made = airq_nb.evaluate_alerts(store)
        print(json.dumps(len(made)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "claim-and-die":
        delivery = store.claim(topics=[SEND_TOPIC], lease_seconds=1.0)
        print(json.dumps(delivery is not None), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "race":
        rounds = int(sys.argv[3])
        store.set(("test", "ready", os.getpid()), True)
        deadline = time.monotonic() + 60
        while not store.get(("test", "go")).value:
            if time.monotonic() > deadline:
                raise SystemExit("never told to go")
            time.sleep(0.005)
        made = sum(len(airq_nb.evaluate_alerts(store)) for _ in range(rounds))
        print(json.dumps(made), flush=True)
    store.close()


if __name__ == "__main__":
    main()
