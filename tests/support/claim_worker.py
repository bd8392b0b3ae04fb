"""A stand-alone external worker, run as its own OS process by the claim tests.

    python -m tests.support.claim_worker BASE_URL PROCESS WORKER OUT_FILE
    (the token comes from OPENSOP_TEST_TOKEN)

It claims steps of PROCESS ten at a time and submits each with its lease token, until
claims come back empty a few times in a row. Every claim it got is one JSON line in
OUT_FILE: ``{"instance_id", "step_id", "lease_token", "attempt", "status"}`` where status
is the HTTP status of the submission.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx

EMPTY_CLAIMS_TO_STOP = 3
BATCH = 10


def main(base_url: str, process: str, worker: str, out_file: str) -> int:
    headers = {"X-SOP-Token": os.environ["OPENSOP_TEST_TOKEN"]}
    empty = 0
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client,
        open(out_file, "w") as out,
    ):
        while empty < EMPTY_CLAIMS_TO_STOP:
            response = client.post(
                "/sop/steps/claim",
                json={"worker": worker, "process": process, "limit": BATCH, "lease_seconds": 300},
            )
            response.raise_for_status()
            claimed = response.json()
            if not claimed:
                empty += 1
                time.sleep(0.05)
                continue
            empty = 0
            for step in claimed:
                submitted = client.post(
                    f"/sop/{process}/{step['instance_id']}/steps/{step['step_id']}/submit",
                    json={"outputs": {"by": worker}, "lease_token": step["lease_token"]},
                )
                record = {key: step[key] for key in ("instance_id", "step_id", "lease_token")}
                record.update(attempt=step["attempt"], status=submitted.status_code)
                out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
