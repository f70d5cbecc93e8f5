"""One request's walk down the path, whichever surface it came from: ``dispatch`` checks the
key's limits, the prompt's fit and leases a slot on the backend routing prefers, then sends
it; ``accounting`` closes the exchange after the last byte — the lease back, the limits
settled with the real usage, the tokens counted."""

from gateway.exchange.accounting import Exchange
from gateway.exchange.dispatch import Dispatcher

__all__ = ["Dispatcher", "Exchange"]
