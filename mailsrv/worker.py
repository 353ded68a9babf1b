"""A worker process of ``twistd mailsrv --workers N``: started by the
parent (:class:`mailsrv.workers.WorkerManager`) as ``python -m
mailsrv.worker``, it builds the mail service from the configuration the
parent hands over and adopts the parent's listening sockets."""

from mailsrv import tap, workers

if __name__ == "__main__":
    workers.run_worker(tap.make_worker_service)
