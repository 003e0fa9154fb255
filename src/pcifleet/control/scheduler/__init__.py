"""The scheduler: candidate index -> filters (the domain's host fit) -> weighers -> claim.

- :mod:`.codec`: placements and device requests as the JSON the instance rows keep;
- :mod:`.hostload`: a host's :class:`~pcifleet.domain.hoststate.HostState` read from the
  database (one host, or the whole fleet at start);
- :mod:`.index`: the in-memory candidate index (free counts per pool key, per host) and the
  generation-keyed cache of host states;
- :mod:`.weighers`: the order candidates are tried in (pack or spread);
- :mod:`.outcomes`: per-host outcomes and the aggregated "why nothing fits";
- :mod:`.claim`: the database writes of a claim and of a release;
- :mod:`.scheduler`: schedule + claim in one transaction, with bounded compare-and-swap retries,
  and the dry run (``explain``).
"""
