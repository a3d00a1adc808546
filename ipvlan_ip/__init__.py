"""ipvlan-ip: a CNI plugin that gives a container an ipvlan interface by driving iproute2.

Read in this order: environment, config (with schemas and results), commands
(the pure command builder), runner (the only code that executes anything),
ipam, capability (the shape of an opt-in capability) and capabilities (the
list: host_access, proxy_neighbors, vlan, slaac), operations, plugin (the
CNI entry point), cli.
"""

__version__ = "0.1.0"
