"""The conversion layer: any version's result in, the asked version out."""

import pytest

from ipvlan_ip import results
from ipvlan_ip.errors import CniError

CURRENT = {"interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
           "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
                   {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 0}],
           "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
           "dns": {"nameservers": ["10.1.0.1"]}}


def test_render_current_versions_unchanged():
    for version in ("1.0.0", "1.1.0"):
        assert results.render(CURRENT, version) == {"cniVersion": version, **CURRENT}


def test_render_0_3_adds_ip_versions():
    out = results.render(CURRENT, "0.4.0")
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert out["interfaces"] == CURRENT["interfaces"]


def test_render_legacy_has_ip4_and_ip6_with_their_routes():
    assert results.render(CURRENT, "0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
        "dns": {"nameservers": ["10.1.0.1"]}}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_parse_reads_back_what_render_wrote(version):
    back = results.parse(results.render(CURRENT, version), version, "test")
    if version in ("0.1.0", "0.2.0"):   # no interfaces in the legacy shape
        assert back["ips"] == [{k: v for k, v in ip.items() if k != "interface"} for ip in CURRENT["ips"]]
        assert back["routes"] == CURRENT["routes"]
    else:
        assert back == CURRENT


def test_parse_rejects_wrong_shapes_and_versions():
    with pytest.raises(CniError) as e:
        results.parse({"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]}, "1.0.0", "IPAM result")
    assert e.value.code == 6 and "$.ips[0].address" in e.value.details
    with pytest.raises(CniError) as e:
        results.parse({"cniVersion": "1.0.0", "ips": [{"address": "999.1.1.1/24"}]}, "1.0.0", "IPAM result")
    assert e.value.code == 6 and "999.1.1.1" in e.value.details
    with pytest.raises(CniError) as e:
        results.parse({"cniVersion": "7.0.0"}, "1.0.0", "IPAM result")
    assert e.value.code == 1
