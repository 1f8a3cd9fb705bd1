"""Filters for the k3s role's pre-flight checks of the API VIP (k3s_api_vip).

ansible.utils' ipaddr filters need the netaddr package, which the controller's environment
does not have; these use Python's own ``ipaddress`` module instead.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def k3s_ipv4_problem(text: Any) -> str:
    """Return why ``text`` cannot be the API VIP (a unicast IPv4 address), or ``''``."""
    value = str(text or "").strip()
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return "not an IPv4 address (four decimal numbers 0-255, no prefix length, no name)"
    if address.is_loopback or address.is_multicast or address.is_unspecified or address.is_link_local:
        return "a loopback, multicast, link-local or unspecified address cannot be announced by ARP"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    return ""


def k3s_ipv4_network_problem(text: Any, network: Any, netmask: Any) -> str:
    """Return why IPv4 ``text`` is not a host address of ``network``/``netmask``, or ``''``.

    ``network`` and ``netmask`` are an interface's facts (``ansible_facts[iface].ipv4``); the
    network and broadcast addresses of a subnet wider than /31 are refused too.
    """
    try:
        subnet = ipaddress.IPv4Network(f"{network}/{netmask}", strict=False)
        address = ipaddress.IPv4Address(str(text).strip())
    except ValueError as error:
        return f"cannot be compared with {network}/{netmask}: {error}"
    if address not in subnet:
        return f"not in the interface's subnet {subnet}"
    if subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        return f"the network or broadcast address of {subnet}"
    return ""


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        """Return the filters this module provides."""
        return {
            "k3s_ipv4_problem": k3s_ipv4_problem,
            "k3s_ipv4_network_problem": k3s_ipv4_network_problem,
        }
