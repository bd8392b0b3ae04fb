"""The job runner: claims due jobs, does the slow part outside any transaction, and
applies the result through the service.

    ┌ wait: until woken (a commit queued jobs), the next job is due, or the idle poll ┐
    └─▶ claim due jobs under a lease ─▶ one task per job ─▶ apply result, job done ──┘

Many runners (threads of `opensop serve`, `opensop worker` processes) can share one
store: claims are leases, so a job is held by one runner at a time, and a runner that
dies loses its leases when they expire. A runner that stops gracefully cancels its jobs
(killing their scripts) and hands their leases back, so any runner can claim them at once
instead of after the lease. Results carry the step attempt they belong to, so a job that
runs again after a crash or a stop changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from opensop.clock import Clock
from opensop.engine.jobs import JobKind
from opensop.runtime.scripts import run_script
from opensop.store.jobs import Job
from opensop.work import Work

log = logging.getLogger("opensop.runner")

DEFAULT_LEASE_SECONDS = 15.0
# Without a wake-up, look again this often: jobs queued by other processes.
IDLE_POLL_SECONDS = 1.0
_SCRIPT_LEASE_MARGIN = 10.0
# At shutdown, how long handing leases back may take; after that they expire on their own.
HAND_BACK_TIMEOUT_SECONDS = 5.0


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Runner:
    def __init__(
        self,
        work: Work,
        clock: Clock,
        *,
        concurrency: int = 4,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        idle_poll_seconds: float = IDLE_POLL_SECONDS,
    ) -> None:
        self.work = work
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.owner = runner_id()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # The running job tasks and the job each one holds.
        self._tasks: dict[asyncio.Task[None], Job] = {}

    def wake(self) -> None:
        """Thread-safe: a commit queued jobs; look now instead of at the next poll."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self.work.on_jobs(self.wake)
        log.info("job runner %s started (concurrency %d)", self.owner, self.concurrency)
        try:
            while not stop.is_set():
                # Cleared before looking, so a wake-up that arrives while we look is kept.
                self._wake.clear()
                due = await self._next_due()
                claimed: list[Job] = []
                if due is not None and due <= self.clock.now():
                    claimed = await self._claim()
                for job in claimed:
                    task = asyncio.create_task(self._execute(job))
                    self._tasks[task] = job
                    task.add_done_callback(self._finished)
                if claimed and len(self._tasks) < self.concurrency:
                    continue  # there may be more due right now
                await self._sleep(stop, due)
        finally:
            # A snapshot: each task leaves self._tasks as it ends.
            running = dict(self._tasks)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await self._hand_back(
                [job for task, job in running.items() if task.cancelled() or task.exception()]
            )

    async def _hand_back(self, jobs: list[Job]) -> None:
        """Give up the leases of jobs left unfinished, so no one waits for them to expire.

        A job finished meanwhile, or already taken by another runner, is left alone.
        """
        if not jobs:
            return
        try:
            handed = await asyncio.wait_for(
                run_in_threadpool(self.work.hand_back_jobs, jobs), HAND_BACK_TIMEOUT_SECONDS
            )
        except Exception:
            log.exception("handing back %d job leases failed; they expire on their own", len(jobs))
            return
        log.info("handed back the leases of %d unfinished jobs", handed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._wake.set()  # a slot is free

    async def _claim(self) -> list[Job]:
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return []
        try:
            return await run_in_threadpool(
                self.work.claim_jobs, self.owner, free, self.lease_seconds
            )
        except Exception:
            log.exception("claiming jobs failed; trying again shortly")
            return []

    async def _next_due(self) -> datetime | None:
        """When the next job can be claimed; reading is cheap, claiming is a write."""
        try:
            return await run_in_threadpool(self.work.next_due_at)
        except Exception:
            log.exception("reading the next due job failed")
            return None

    async def _sleep(self, stop: asyncio.Event, due: datetime | None) -> None:
        """Until woken, the next job is due (if a slot is free), or the idle poll."""
        timeout = self.idle_poll_seconds
        if due is not None and len(self._tasks) < self.concurrency:
            timeout = min(timeout, max(0.0, (due - self.clock.now()).total_seconds()))
        stopped = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {stopped, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            woken.cancel()

    async def _execute(self, job: Job) -> None:
        try:
            if job.kind is JobKind.RUN_SCRIPT:
                await self._run_script(job)
            else:
                await run_in_threadpool(self.work.apply_job, job)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("job %s (%s) failed", job.id, job.kind)
            await run_in_threadpool(self.work.job_failed, job, f"{type(error).__name__}: {error}")

    async def _run_script(self, job: Job) -> None:
        request = await run_in_threadpool(self.work.script_request, job)
        if request is None:  # the step moved on: finishing applies nothing
            await run_in_threadpool(self.work.apply_job_stale, job)
            return
        keeper = asyncio.create_task(self._keep_lease(job))
        try:
            outcome = await run_script(request)
        finally:
            keeper.cancel()
            await asyncio.wait({keeper})  # no renewal may land after a hand-back
        await run_in_threadpool(self.work.apply_script_outcome, job, outcome)

    async def _keep_lease(self, job: Job) -> None:
        """Renew the job's lease while its script runs, so no other runner starts it.

        Cancelled, it ends only once a renewal in flight is written (or failed).
        """
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            renewal = asyncio.ensure_future(
                run_in_threadpool(self.work.extend_job, job, self.lease_seconds)
            )
            try:
                kept = await asyncio.shield(renewal)
            except asyncio.CancelledError:
                await asyncio.gather(renewal, return_exceptions=True)
                raise
            except Exception:
                log.exception("renewing the lease of job %s failed", job.id)
                continue
            if not kept:
                log.warning("lost the lease of job %s", job.id)
                return
