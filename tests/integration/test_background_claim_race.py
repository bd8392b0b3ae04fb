"""Four worker processes race for 2,000 worker steps: each step is claimed exactly once,
and every instance completes. On SQLite and on PostgreSQL, each with a fresh server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.support.api import count, process, register, unique
from tests.support.background import automated
from tests.support.server import REPO_ROOT, Server, clean_env, running_server

INSTANCES = 2_000
WORKERS = 4
STARTERS = 8
WORKER_TIMEOUT_SECONDS = 60


def start_many(server: Server, name: str, total: int) -> set[str]:
    """Start ``total`` instances over a few parallel connections; their ids."""

    def start_share(share: int) -> list[str]:
        with server.client() as client:
            ids = []
            for _ in range(share):
                response = client.post(f"/sop/{name}/start", json={"inputs": {}})
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            return ids

    shares = [total // STARTERS + (1 if i < total % STARTERS else 0) for i in range(STARTERS)]
    with ThreadPoolExecutor(STARTERS) as pool:
        return {iid for ids in pool.map(start_share, shares) for iid in ids}


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_four_worker_processes_claim_each_of_2000_steps_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    url: str = request.getfixturevalue(f"{store}_url")
    with running_server(url) as server, server.client() as client:
        name = unique("race")
        outputs = [{"name": "by", "type": "string", "required": True}]
        register(client, process(name, [automated("work", outputs=outputs)]))
        started = start_many(server, name, INSTANCES)
        assert len(started) == INSTANCES

        assert server.token
        env = clean_env(OPENSOP_TEST_TOKEN=server.token)
        files = [tmp_path / f"worker-{n}.jsonl" for n in range(WORKERS)]
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.claim_worker",
                    server.base_url,
                    name,
                    f"worker-{n}",
                    str(file),
                ],
                cwd=REPO_ROOT,
                env=env,
                stderr=subprocess.PIPE,
            )
            for n, file in enumerate(files)
        ]
        try:
            errors = [worker.communicate(timeout=WORKER_TIMEOUT_SECONDS)[1] for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        assert [worker.returncode for worker in workers] == [0] * WORKERS, errors

        claims = [json.loads(line) for file in files for line in file.read_text().splitlines()]
        per_step = Counter((c["instance_id"], c["step_id"]) for c in claims)
        twice = {step: n for step, n in per_step.items() if n > 1}
        assert twice == {}, f"claimed more than once: {list(twice.items())[:5]}"
        assert {instance_id for instance_id, _ in per_step} == started
        assert len({c["lease_token"] for c in claims}) == INSTANCES
        assert Counter(c["status"] for c in claims) == {200: INSTANCES}
        assert all(c["attempt"] == 1 for c in claims)
        assert count(client, process=name, state="completed") == INSTANCES
        by_worker = Counter(file.name for file in files for _ in file.read_text().splitlines())
        assert len(by_worker) > 1, f"one worker took everything: {by_worker}"


def test_a_claim_never_hands_out_a_step_another_worker_holds(
    server: Server, client: httpx.Client
) -> None:
    """The same race in small, over threads of one process, against each shared server."""
    name = unique("small-race")
    register(client, process(name, [automated("work", outputs=[])]))
    started = start_many(server, name, 40)

    def grab(worker: int) -> list[str]:
        with server.client() as own:
            got: list[str] = []
            while batch := own.post(
                "/sop/steps/claim", json={"worker": f"t{worker}", "process": name, "limit": 3}
            ).json():
                got += [step["instance_id"] for step in batch]
            return got

    with ThreadPoolExecutor(8) as pool:
        taken = [iid for got in pool.map(grab, range(8)) for iid in got]

    assert sorted(taken) == sorted(started)
