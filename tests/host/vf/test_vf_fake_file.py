"""The file-backed fake VF configurator: VF tables outlive the object that changed them."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from pcifleet.domain.errors import InvalidInput, InvalidVfSetting, VfError
from pcifleet.host.vf.fake_file import FileBackedFakeVfConfigurator
from pcifleet.host.vf.model import LinkState, VfField, VfSettings, VlanProto, VlanTag

PF = "ens1f0"


def test_vf_tables_survive_a_restart_fake_file(tmp_path: Path) -> None:
    path = tmp_path / "vfs.json"
    first = FileBackedFakeVfConfigurator(path)
    assert first.loaded is False
    first.add_pf(PF, 4)
    first.add_pf("ens2f0", 2, reports_spoofchk=False, reports_trust=False)
    first.apply(
        PF,
        1,
        VfSettings(
            mac="fa:16:3e:00:00:01",
            vlan=VlanTag(100, 3, VlanProto.DOT1AD),
            min_tx_rate=10,
            max_tx_rate=100,
            trust=True,
            link_state=LinkState.DISABLE,
        ),
    )
    first.guest_sets_mac(PF, 2, "fa:16:3e:00:00:22")
    again = FileBackedFakeVfConfigurator(path)
    assert again.loaded is True
    for pf, count in ((PF, 4), ("ens2f0", 2)):
        assert again.num_vfs(pf) == count
        assert [again.read(pf, i) for i in range(count)] == [
            first.read(pf, i) for i in range(count)
        ]
    assert again.read("ens2f0", 0).trust is None
    again.remove_pf("ens2f0")
    assert FileBackedFakeVfConfigurator(path).num_vfs(PF) == 4
    with pytest.raises(VfError):
        FileBackedFakeVfConfigurator(path).num_vfs("ens2f0")


def test_a_write_that_failed_part_way_is_kept_as_far_as_it_went_fake_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vfs.json"
    fake = FileBackedFakeVfConfigurator(path)
    fake.add_pf(PF, 2)
    fake.fail(PF, 0, VfField.TRUST, errno.EPERM)
    with pytest.raises(VfError):
        fake.apply(PF, 0, VfSettings(mac="fa:16:3e:00:00:09", trust=True))
    row = FileBackedFakeVfConfigurator(path).read(PF, 0)
    assert (row.mac, row.trust) == ("fa:16:3e:00:00:09", False)


@pytest.mark.parametrize(
    ("content", "error", "field"),
    [
        ("{", InvalidInput, "path"),
        ('{"pfs": []}', InvalidInput, "pfs"),
        ('{"pfs": {"ens1f0": {}}}', InvalidInput, "pfs"),
        ('{"pfs": {"ens1f0": [{"mac": "00:00:00:00:00:00"}]}}', InvalidInput, "index"),
        ('{"pfs": {"ens1f0": [{"index": 0}]}}', InvalidVfSetting, "mac"),
    ],
)
def test_a_malformed_vf_file_is_refused_naming_the_field(
    tmp_path: Path, content: str, error: type[Exception], field: str
) -> None:
    path = tmp_path / "vfs.json"
    path.write_text(content)
    with pytest.raises(error) as caught:
        FileBackedFakeVfConfigurator(path)
    assert isinstance(caught.value, InvalidInput) and caught.value.fields["field"] == field


def test_the_vf_file_is_plain_json_a_test_can_edit(tmp_path: Path) -> None:
    path = tmp_path / "vfs.json"
    FileBackedFakeVfConfigurator(path).add_pf(PF, 1)
    data = json.loads(path.read_text())
    data["pfs"][PF][0]["mac"] = "fa:16:3e:aa:aa:aa"
    path.write_text(json.dumps(data))
    assert FileBackedFakeVfConfigurator(path).read(PF, 0).mac == "fa:16:3e:aa:aa:aa"
