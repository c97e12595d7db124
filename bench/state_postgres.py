"""How fast is PostgreSQL state for a large workspace? Prints figures; asserts nothing.

Starts a throwaway PostgreSQL server (as the tests do), then for N addresses (batch items):
the first save, a load, a save that changes one address (what apply does after every create:
only that row is written), and the time to take and release the lock.

    python bench/state_postgres.py [N]
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobrunner.state.model import AddressState, Attempt  # noqa: E402
from jobrunner.state.postgres import PostgresStore  # noqa: E402
from tests.state.postgres.pg_server import start_server  # noqa: E402


def item(i: int) -> AddressState:
    address = f"PredictionBatch/eval[item-{i:05d}]"
    return AddressState(
        address=address, kind="PredictionBatch", job_kind="prediction", provider="local",
        file="specs/eval.yaml", fingerprint=f"{i:064x}", remote_id=f"p{i:08d}", status="succeeded",
        attempts=1, outputs={"output": "x" * 200}, inputs={"prompt": f"prompt {i}", "seed": i},
        history=[Attempt(remote_id=f"p{i:08d}", fingerprint=f"{i:064x}", attempt=1,
                         created_at="2026-01-01T00:00:00Z", status="succeeded")],
    )


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = start_server()
    try:
        url = server.create_database("bench")
        store = PostgresStore(url)
        doc = store.load()
        for i in range(n):
            a = item(i)
            doc.addresses[a.address] = a
        first = timed(lambda: store.save(doc))
        load = statistics.median(timed(lambda: PostgresStore(url).load()) for _ in range(5))
        one = []
        for k in range(50):
            doc.addresses[f"PredictionBatch/eval[item-{k:05d}]"].status = "failed" if k % 2 else "succeeded"
            one.append(timed(lambda: store.save(doc)))
        lock = statistics.median(timed(lambda: store.lock("apply").__enter__() or store._release()) for _ in range(20))
        print(f"addresses:                     {n}")
        print(f"first save (all rows):         {first:8.1f} ms")
        print(f"load (fresh connection):       {load:8.1f} ms  (median of 5)")
        print(f"save after 1 address changed:  {statistics.median(one):8.1f} ms  (median of 50; p95 "
              f"{sorted(one)[int(len(one) * 0.95) - 1]:.1f} ms)")
        print(f"lock + release:                {lock:8.1f} ms  (median of 20)")
        store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
