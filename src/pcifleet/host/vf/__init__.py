"""SR-IOV VF configuration on the agent.

- ``model``: typed VF state (``VfState``) and desired changes (``VfSettings``, None = leave);
- ``configurator``: the ``VfConfigurator`` protocol and its exact contract;
- ``netlink``: the pyroute2 implementation on the PF; ``fake``: the in-memory one for tests;
- ``service``: ``VfManager`` (snapshot/restore, no-op diff, rollback, per-VF lock);
- ``mapping``: Neutron's ``physical_device_mappings`` / ``exclude_devices`` and the physnet plan;
- ``qos``: kbit/s -> VF Mbit/s with Neutron's rounding, burst refusal;
- ``macvtap``: passthrough macvtap links over a VF netdev for ``macvtap`` vnic ports.
"""
