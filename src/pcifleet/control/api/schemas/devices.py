"""``/v1/devices``: the fleet's PCI functions, and the device part of inventory reports."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, Field

from pcifleet.control.api.schemas.common import Out, Strict
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceState, DeviceType
from pcifleet.domain.errors import PcifleetError


def _address(text: str) -> str:
    """Normalize through the domain; its message (field and rule) becomes the 400's rule."""
    try:
        return str(PciAddress.parse(text))
    except PcifleetError as exc:
        raise ValueError(str(exc)) from None


#: a PCI address ``[dddd:]bb:ss.f``, normalized to ``dddd:bb:ss.f``
Address = Annotated[
    str, Field(min_length=1, max_length=16, examples=["0000:3b:00.0"]), AfterValidator(_address)
]
Hex4 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}$", examples=["8086"])]
ClassCode = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{6}$", examples=["020000"])]
ShortText = Annotated[str, Field(min_length=1, max_length=255)]


class DeviceIn(Strict):
    """One PCI function in an agent's report (state and owner are the controller's)."""

    address: Address
    vendor_id: Hex4
    product_id: Hex4
    dev_type: DeviceType
    class_code: ClassCode | None = None
    #: None when the kernel reports -1 (unknown)
    numa_node: int | None = Field(default=None, ge=0, le=1023)
    #: the parent PF of a VF or vDPA device
    parent: Address | None = None
    vf_index: int | None = Field(default=None, ge=0, le=65535)
    driver: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    netdevs: list[ShortText] = Field(default_factory=list, max_length=64)
    #: tags from the device spec that matched (physical_network, trusted, ...)
    tags: dict[ShortText, Annotated[str, Field(max_length=255)]] = Field(
        default_factory=dict, max_length=64
    )
    #: human name (pci.ids), for display
    label: Annotated[str, Field(max_length=255)] | None = None


class DeviceOut(Out):
    id: str
    host: str
    host_id: str
    address: str
    vendor_id: str
    product_id: str
    dev_type: DeviceType
    class_code: str | None
    numa_node: int | None
    parent: str | None
    vf_index: int | None
    driver: str | None
    netdevs: list[str]
    tags: dict[str, str]
    resource_class: str | None
    state: DeviceState
    #: the instance holding the device (claimed or allocated)
    instance_id: str | None
    request_id: str | None
    #: the host stopped reporting it while it was in use (kept until freed)
    vanished: bool
    vanished_at: dt.datetime | None
    label: str | None


class DeviceList(Out):
    devices: list[DeviceOut]
