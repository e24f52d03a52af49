"""The consumers' side of RabbitMQ, along its seams:

- `topology`: the queues of one consumer (main, retry delays, parking) and their
  declaration;
- `runtime`: the worker that runs a use case for every `user.new` message, with
  retries, parking and once-per-event-id side effects;
- `dead_letters`: listing and requeueing parked messages (`signup worker
  dead-letters|requeue`);
- `migration`: moving queues an earlier version declared with other arguments over
  (`signup worker migrate-queues`);
- `connection`: the workers' connection, moving over the broker nodes;
- `messages`: the headers the runtime writes, copies of a message, its event id.

The names the rest of the code uses are importable from here.
"""

from signup.adapters.consumer.dead_letters import (
    DeadLetter,
    list_dead_letters,
    requeue_dead_letters,
)
from signup.adapters.consumer.messages import (
    ATTEMPTS_HEADER,
    CONSUMER_HEADER,
    MAX_REASON_CHARS,
    PARKED_AT_HEADER,
    REASON_HEADER,
    REQUEUED_HEADER,
    event_id_of,
)
from signup.adapters.consumer.migration import Migration, WorkersStillRunning, migrate_queues
from signup.adapters.consumer.runtime import Consumer, Handler
from signup.adapters.consumer.topology import DEFAULT_PREFIX, Topology, delete_topology

__all__ = [
    "ATTEMPTS_HEADER",
    "CONSUMER_HEADER",
    "DEFAULT_PREFIX",
    "MAX_REASON_CHARS",
    "PARKED_AT_HEADER",
    "REASON_HEADER",
    "REQUEUED_HEADER",
    "Consumer",
    "DeadLetter",
    "Handler",
    "Migration",
    "Topology",
    "WorkersStillRunning",
    "delete_topology",
    "event_id_of",
    "list_dead_letters",
    "migrate_queues",
    "requeue_dead_letters",
]
