"""A sample of tests/unit/test_generated_input.py's generated inputs through
the real plugin: a failure leaves nothing in the netns and nothing reserved;
a success is undone by DEL."""


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_generated_input import configs

from .conftest import call_plugin, reservations
from .test_plugin import host_local, links_in


def test_generated_inputs_leave_nothing_behind(make_master, make_netns, tmp_path):
    master, netns = make_master(), make_netns()
    ipam_dir = tmp_path / "ipam"
    ipam = host_local(ipam_dir, subnet="10.90.0.0/24", gateway="10.90.0.1")
    path = f"/run/netns/{netns}"

    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["ADD"] * 3 + ["DEL", "CHECK"]), configs(master=master, ipam=ipam))
    def check(command, stdin):
        reply = call_plugin(command, stdin, path)
        assert "Traceback" not in reply.stderr
        assert reply.code in (0, 1) and (reply.out is not None or command != "ADD")
        if reply.code == 1:
            assert set(reply.out) == {"cniVersion", "code", "msg", "details"}
        if command == "ADD" and reply.code == 0:
            assert call_plugin("DEL", stdin, path).code == 0
        assert links_in(netns) == ["lo"], (command, stdin, reply.stdout)
        assert reservations(ipam_dir) == [], (command, stdin, reply.stdout)

    check()
