"""Kombu's Redis transport, with a worker that survives losing Redis while it holds an unacknowledged task.

Celery 5.7's consumer, on a lost broker connection, first collects the connection (which detaches its
transport: the transport's `client` becomes None) and then closes it. Closing the default channel
restores the unacknowledged messages through a new Redis client made from that client's address, which
is gone: an AttributeError, which Celery treats as unrecoverable, and the worker process exits instead
of reconnecting (tests/faults/test_redis_restart.py saw it whenever a trigger was unacknowledged at the
moment Redis died). A channel whose transport was detached therefore closes without restoring: the
messages stay in Redis's unacknowledged set and come back after the visibility timeout, and what they
were triggers for is in the database anyway, where the scheduler finds it.
"""

from __future__ import annotations

from kombu.transport import redis

__all__ = ["Transport"]


class Channel(redis.Channel):
    def close(self) -> None:
        if self.connection is not None and self.connection.client is None:  # detached by Connection.collect()
            self.do_restore = False
        super().close()


class Transport(redis.Transport):
    Channel = Channel
