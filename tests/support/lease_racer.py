"""A process racing others to take over a stale lease, round after round (tests/output/test_lease_race.py).

``python -m tests.support.lease_racer SYNC_DIR ROUNDS [S3_SERVER_JSON]``: for each round k it waits for
``SYNC_DIR/go-k``, then takes the lease of target ``race-k.zarr`` (under SYNC_DIR, or in the S3 server's
bucket) and prints ``{"round": k, "won": true|false}``. The winner keeps its lease (it is not released).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lazymerge.errors import OutputLockedError
from lazymerge.output.target import Lease, open_target


def main() -> None:
    sync, rounds = Path(sys.argv[1]), int(sys.argv[2])
    server = None
    if len(sys.argv) > 3:
        from tests.support.s3_server import S3Server

        server = S3Server(*json.loads(sys.argv[3]))
    print(json.dumps({"ready": True}), flush=True)
    for k in range(rounds):
        while not (sync / f"go-{k}").exists():
            time.sleep(0.001)
        target = server.store(f"race-{k}.zarr") if server else str(sync / f"race-{k}.zarr")
        try:
            Lease(open_target(target)).acquire()
            won = True
        except OutputLockedError:
            won = False
        print(json.dumps({"round": k, "won": won}), flush=True)


if __name__ == "__main__":
    main()
