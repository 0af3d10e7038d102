"""What ``GET /health`` and ``GET /livez`` say: the server's state, for balancers and orchestrators.

Two questions, two endpoints, because a balancer and a supervisor act on different answers:

* **readiness** (``/health``): should this replica get *new* connections?  200 only when the
  models are loaded, the server is not draining and fewer than ``--max-connections``
  connections are open; 503 otherwise.  A balancer (HAProxy's ``option httpchk``, a
  Kubernetes ``readinessProbe``) takes a replica out of rotation on 503 and back on 200;
  connections already open are not touched either way.
* **liveness** (``/livez``): is the process working at all?  200 whenever the event loop
  answers: while the models load (a first start may download them for minutes), while it
  drains (utterances in flight are finishing; a restart now would lose them) and when full.
  A supervisor (a Kubernetes ``livenessProbe``) restarts the process only when this fails.

Both answer the same JSON body (:meth:`Health.body`), so one probe shows the counts a person
or a script needs: the state, open connections and the limit, utterances in flight by mode,
model jobs queued.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Optional

#: The states of :attr:`Health.state`, in the order they are decided.
LOADING, DRAINING, FULL, READY = "loading", "draining", "full", "ready"


@dataclass(frozen=True)
class Health:
    """One reading of the server's state (taken on the event loop, so the counts agree)."""

    loaded: bool  # the models are loaded
    draining: bool  # SIGTERM came: no new connections, utterances in flight finish
    connections: int  # WebSocket connections open (the ones --max-connections counts)
    max_connections: Optional[int]  # None: no limit
    profile: str = ""  # "offline" or "2pass"; "" while the models load
    #: Connections with an utterance in flight (audio received and not yet answered), by mode.
    active_streams: Dict[str, int] = field(default_factory=dict)
    queue_depth: int = 0  # model jobs submitted to the decoder pool and not finished

    @property
    def state(self) -> str:
        if not self.loaded:
            return LOADING
        if self.draining:
            return DRAINING
        if self.max_connections is not None and self.connections >= self.max_connections:
            return FULL
        return READY

    @property
    def ready(self) -> bool:
        """Whether a new connection would be accepted (what ``/health`` answers 200 for)."""
        return self.state == READY

    def body(self) -> str:
        return json.dumps(
            {
                "status": self.state,
                "ready": self.ready,
                "loaded": self.loaded,
                "draining": self.draining,
                "profile": self.profile,
                "connections": self.connections,
                "max_connections": self.max_connections,
                "active_streams": dict(sorted(self.active_streams.items())),
                "queue_depth": self.queue_depth,
            },
            separators=(", ", ": "),
        ) + "\n"
