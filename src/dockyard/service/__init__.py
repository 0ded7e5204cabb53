"""The CI service: ``dockyard server`` and ``dockyard agent``.

The server has the REST API, webhooks, a queue of runs and secrets; agents are build
hosts that take runs by label and run them with :mod:`dockyard.ci`.

- :mod:`.models`, :mod:`.database` (and ``migrations/``): the tables, on SQLite or
  PostgreSQL, migrated by Alembic on start;
- :mod:`.queue`: runs taken atomically by one agent, leases, requeue of dead agents';
- :mod:`.reports`: numbered log/step/end reports from agents, stored exactly once;
- :mod:`.api` (with :mod:`.notify`): the REST API, log follow by Server-Sent Events;
- :mod:`.webhooks`: signed push payloads from forges; :mod:`.tokens`: API tokens and
  roles; :mod:`.secrets`: AES-GCM at rest;
- :mod:`.agent`, :mod:`.checkout`, :mod:`.reporter`: the agent side;
- :mod:`.server`: the process that ties the server together.
"""
