"""ipvlan-ip: a CNI plugin that gives a container an ipvlan interface by driving iproute2.

The folders are the layers, from the ground up: the modules here hold the
config, its schemas and results, the pure command builder (commands), IPAM,
the link and the operations; node/ is what touches the node (the runner, the
only code that executes anything, with the kernel's in-process calls and the
plugin's records and locks); capabilities/ the opt-in capabilities, each of
the shape capability.py gives; front/ the ways in (plugin, the CNI entry
point; netavark, Podman 5's; cli); tools/ what serves people (plan, doctor,
show, install). main.py picks the front end.

Read in this order: environment, config (with schemas and results), commands,
node/runner, ipam, capabilities/capability and capabilities/, link,
operations, front/plugin, front/cli.
"""

__version__ = "0.1.0"
