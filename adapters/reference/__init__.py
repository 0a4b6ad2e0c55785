"""Reference implementations of a Tempo session server and client (see server.py, client.py).

    python -m adapters.reference demo --hints --chain memory --requests 5
    python -m adapters.reference serve --port 8402 --hints
"""
from .client import (
    ChallengeRejected,
    ChannelView,
    DepositExhausted,
    HintBoundExceeded,
    PaymentRefused,
    SessionClient,
)
from .server import PAID_PREFIX, RunningServer, ServerConfig, SessionServer, serve
from .store import StoredChannel

__all__ = [
    "SessionClient",
    "ChannelView",
    "PaymentRefused",
    "HintBoundExceeded",
    "DepositExhausted",
    "ChallengeRejected",
    "ServerConfig",
    "SessionServer",
    "RunningServer",
    "serve",
    "PAID_PREFIX",
    "StoredChannel",
]
