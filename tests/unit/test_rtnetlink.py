"""rtnetlink.py against the kernel's answers as bytes (issue 48): a pod's
first link whose lower has its own ifindex, in another netns; a dump that
the kernel says it interrupted, asked again; one that failed or did not fit,
a failure of the call rather than a shorter list."""

import struct

import pytest

from ipvlan_ip.errors import TRY_AGAIN_LATER, CniError
from ipvlan_ip.node import rtnetlink
from ipvlan_ip.node.kernel import _whole
from ipvlan_ip.node.rtnetlink import NLM_F_DUMP_INTR, RTM_NEWLINK, DumpFailed


def attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("HH", 4 + len(value), kind) + value.ljust((len(value) + 3) & ~3, b"\0")


def message(kind: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("IHHII", 16 + len(body), kind, flags, 1, 0) + body


def link(index: int, name: str, lower: int = 0, netnsid: int | None = None, kind: str = "", flags: int = 0) -> bytes:
    attrs = attribute(rtnetlink.IFLA_IFNAME, name.encode() + b"\0")
    attrs += attribute(rtnetlink.IFLA_LINK, struct.pack("i", lower)) if lower else b""
    attrs += attribute(rtnetlink.IFLA_LINK_NETNSID, struct.pack("i", netnsid)) if netnsid is not None else b""
    attrs += attribute(rtnetlink.IFLA_LINKINFO, attribute(rtnetlink.IFLA_INFO_KIND, kind.encode())) if kind else b""
    return message(RTM_NEWLINK, struct.pack("BxHiII", 0, 0, index, 0, 0) + attrs, flags)


def done(error: int = 0, flags: int = 0) -> bytes:
    return message(rtnetlink.NLMSG_DONE, struct.pack("i", -error), flags)


class Socket:
    """Answers each dump asked for with the next of `answers` (a list of datagrams each)."""

    def __init__(self, *answers, truncated: bool = False):
        self.answers, self.asked, self.truncated = list(answers), 0, truncated

    def send(self, request: bytes) -> None:
        self.asked += 1
        self.pending = list(self.answers.pop(0))

    def recvmsg(self, size: int):
        return self.pending.pop(0), [], rtnetlink.MSG_TRUNC if self.truncated else 0, None


def test_a_pods_first_link_on_a_nic_of_the_same_ifindex_names_its_lower():
    # A node's NIC is ifindex 2, and so is a pod's first link: the lower is real, in the host's netns.
    [found] = rtnetlink.links(Socket([link(2, "eth0", lower=2, netnsid=0, kind="ipvlan") + done()]))
    assert (found.index, found.lower, found.lower_netnsid, found.kind) == (2, 2, 0, "ipvlan")
    # The kernel leaves IFLA_LINK out where a link is its own lower: no lower.
    [nic] = rtnetlink.links(Socket([link(2, "eth0") + done()]))
    assert nic.lower == 0


def test_an_interrupted_dump_is_asked_again():
    sock = Socket([link(2, "eth0", flags=NLM_F_DUMP_INTR) + done(flags=NLM_F_DUMP_INTR)],
                  [link(2, "eth0"), link(3, "eth0.20") + done()])
    assert [found.name for found in rtnetlink.links(sock)] == ["eth0", "eth0.20"] and sock.asked == 2


@pytest.mark.parametrize("sock", [
    Socket([link(2, "eth0") + done(error=4)]),                                     # DONE carries the dump's error
    Socket([link(2, "eth0") + message(rtnetlink.NLMSG_ERROR, struct.pack("i", -16))]),
    Socket([link(2, "eth0") + done()], truncated=True),                            # an answer did not fit
    Socket(*[[link(2, "eth0", flags=NLM_F_DUMP_INTR) + done()]] * rtnetlink.DUMP_TRIES),
], ids=["done-error", "error", "truncated", "always-interrupted"])
def test_a_dump_that_failed_fails_the_call_and_never_reads_short(sock):
    with pytest.raises(DumpFailed):
        rtnetlink.links(sock)
    with pytest.raises(CniError) as raised:
        _whole(lambda s: rtnetlink.links(Socket([link(2, "eth0") + done(error=4)])), sock, "the interfaces")
    assert raised.value.code == TRY_AGAIN_LATER and "nothing was decided on a partial list" in raised.value.details
