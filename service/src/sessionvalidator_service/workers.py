"""Several server processes sharing one port (``SESSIONVALIDATOR_WORKERS``).

A grpc.aio server spends most of its CPU in one Python thread, so one
process uses about one core. With N workers, N spawned processes bind the
same port with SO_REUSEPORT and the kernel spreads *connections* across them
(clients should open several connections, or use round_robin over several
replicas). The supervisor creates no gRPC object itself (gRPC must not be
initialised before a fork; the workers are spawned, not forked, anyway),
forwards SIGTERM/SIGINT (drain) and SIGHUP (reload secrets), and stops everything with status 1 if a worker dies
on its own, so the orchestrator restarts a whole, healthy unit.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
from types import FrameType

from sessionvalidator_service.config import Settings

__all__ = ["run_workers"]

log = logging.getLogger("sessionvalidator.workers")


def _follow_supervisor(supervisor: int) -> None:
    """Drain (SIGTERM to ourselves) once the supervisor is gone, e.g. SIGKILLed.

    Otherwise an orphaned worker would go on serving the port unsupervised.
    """
    while os.getppid() == supervisor:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(settings: Settings, supervisor: int) -> None:
    import uvloop

    from sessionvalidator_service.logs import configure_logging
    from sessionvalidator_service.server import serve

    configure_logging(settings.log_level)
    threading.Thread(target=_follow_supervisor, args=(supervisor,), name="follow-supervisor", daemon=True).start()
    uvloop.run(serve(settings, reuse_port=True))


def run_workers(settings: Settings) -> int:
    """Run ``settings.workers`` server processes until they are stopped."""
    metrics_dir = None
    if settings.metrics_listen is not None:
        # Set before any worker (or prometheus_client here) starts: every
        # process then writes its samples to files the supervisor merges.
        metrics_dir = tempfile.mkdtemp(prefix="sessionvalidator-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _supervise(settings, metrics_dir)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: Settings, metrics_dir: str | None) -> int:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_main, args=(settings, os.getpid()), name=f"sessionvalidator-worker-{index}")
        for index in range(settings.workers)
    ]
    stopping = False
    kill_at = math.inf

    def stop(signum: int, _frame: FrameType | None = None) -> None:
        nonlocal stopping, kill_at
        if not stopping:
            # A worker that has not drained by then is stuck: it gets SIGKILL.
            kill_at = time.monotonic() + settings.shutdown_grace_s + 5.0
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        log.info("stopping workers", extra={"event": "workers_stopping", "signal": signum})

    def reload(_signum: int, _frame: FrameType | None = None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    for worker in workers:
        worker.start()
    if metrics_dir is not None and settings.metrics_listen is not None:
        from sessionvalidator_service.metrics import serve_metrics

        serve_metrics(settings.metrics_listen, multiprocess=True)
    log.info(
        "supervising workers",
        extra={"event": "workers", "workers": settings.workers, "pids": [w.pid for w in workers]},
    )
    failed = False
    while any(worker.is_alive() for worker in workers):
        multiprocessing.connection.wait([w.sentinel for w in workers if w.is_alive()], timeout=1.0)
        if time.monotonic() >= kill_at:
            for worker in workers:
                if worker.is_alive():
                    log.error(
                        "a worker did not stop in time; killing it", extra={"event": "worker_killed", "pid": worker.pid}
                    )
                    worker.kill()
        for worker in workers:
            if metrics_dir is not None and not worker.is_alive() and worker.pid is not None:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
            if not stopping and not worker.is_alive():
                failed = True
                log.error(
                    "a worker exited on its own; stopping the others",
                    extra={"event": "worker_died", "pid": worker.pid, "exitcode": worker.exitcode},
                )
                stop(signal.SIGTERM)
    codes = [worker.exitcode for worker in workers]
    return 1 if failed or any(code != 0 for code in codes) else 0
