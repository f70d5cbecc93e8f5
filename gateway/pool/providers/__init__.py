"""Where backends come from. Four providers feed the one pool:

- ``static`` — the ``--backend`` list (:mod:`.static`);
- ``docker`` — running containers labelled ``llama-gateway.gateway=<name>``, e.g. started by
  ``docker compose`` (:mod:`.docker`);
- ``kubernetes`` — the pods behind a headless Service, through DNS (:mod:`.kubernetes`);
- the scheduler's runners (``process`` and ``docker`` drivers, :mod:`gateway.runners`), which
  add and remove their own backends as they load and unload models.

The first three only *find* servers; :class:`Providers` polls each on its interval and keeps
the pool equal to what it found (:class:`.membership.Membership`).
"""

from gateway.pool.providers.membership import Membership
from gateway.pool.providers.run import Provider, Providers, build_providers

__all__ = ["Membership", "Provider", "Providers", "build_providers"]
