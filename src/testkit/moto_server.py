"""moto_server with an atomic SQS ReceiveMessage, for ferry's tests and benches.

    python3 src/testkit/moto_server.py -H 127.0.0.1 -p PORT

moto serves every request on its own thread, and its ReceiveMessage picks
the visible messages and marks them received without a lock: two receives
at the same moment can take the same message, which SQS never does within
a visibility timeout. ferry's tests count fetches per file across replicas,
so here each pass over the queue runs under one lock (a long poll waits
outside it, retrying every 50 ms). Everything else is moto unchanged.
"""
import sys
import threading
import time

from moto.server import main
from moto.sqs.models import SQSBackend

_take = SQSBackend.receive_message
_lock = threading.Lock()


def _receive_message(self, queue_name, count, wait_seconds_timeout, visibility_timeout, *rest, **kw):
    end = time.time() + wait_seconds_timeout
    while True:
        with _lock:
            got = _take(self, queue_name, count, 0, visibility_timeout, *rest, **kw)
        if got or time.time() >= end:
            return got
        time.sleep(0.05)


SQSBackend.receive_message = _receive_message

if __name__ == "__main__":
    main(sys.argv[1:])
