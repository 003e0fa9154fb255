"""Mixed vnic types: allow, warn (default wording), deny."""

from __future__ import annotations

import pytest

from pcifleet.domain.errors import InvalidInput
from pcifleet.domain.vnic import VnicType
from pcifleet.network.errors import MixedVnicTypes
from pcifleet.network.policy import MixedVnicPolicy, check_mixed_vnic_types, parse_policy

D, M, N, P = VnicType.DIRECT, VnicType.MACVTAP, VnicType.NORMAL, VnicType.DIRECT_PHYSICAL


@pytest.mark.parametrize(
    ("types", "mixed"),
    [
        ((D, M), True),
        ((P, VnicType.VIRTIO_FORWARDER), True),
        ((D, D, N), False),
        ((M, N), False),
        ((D, P), False),
        ((), False),
    ],
)
def test_warn_only_when_types_migrate_differently(types: tuple[VnicType, ...], mixed: bool) -> None:
    warnings = check_mixed_vnic_types(types, MixedVnicPolicy.WARN)
    assert bool(warnings) is mixed
    if mixed:
        assert "live migration will unplug the direct ports" in warnings[0]


def test_allow_is_silent_and_deny_refuses_naming_the_rule() -> None:
    assert check_mixed_vnic_types((D, M), MixedVnicPolicy.ALLOW) == ()
    with pytest.raises(MixedVnicTypes) as caught:
        check_mixed_vnic_types((D, M), MixedVnicPolicy.DENY)
    assert caught.value.fields["rule"] == "mixed_vnic_types"
    assert "(direct)" in str(caught.value) and "macvtap" in str(caught.value)


def test_parse_policy() -> None:
    assert parse_policy("deny") is MixedVnicPolicy.DENY
    with pytest.raises(InvalidInput, match="allow, warn, deny"):
        parse_policy("maybe")
