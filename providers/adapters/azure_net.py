"""The network an Azure VM is reached through: a Standard static public IP and a network security
group per VM, and the NIC that references both (api-version 2024-05-01). Pure functions, pinned by
the contract tests (tests/contract/test_azure_sdk.py) against azure-mgmt-network's models.

Account settings read here (validated by ``clean_settings`` in the wizard and the account edit):
``public_ip`` (default on), ``ssh_source_cidrs`` (default none: no SSH rule, the pod page says how to
open it) and ``ssh_public_key`` (the key installed for ``admin_username``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .base import LaunchRequest, SettingsInvalid

TAG = "provisioner-pod"
# "Network security groups", section "Security rules": priority 100-4096, unique per direction;
# ARM answers a duplicate with 400 SecurityRuleConflict ("Rules cannot have the same Priority and Direction")
FIRST_PRIORITY, PRIORITY_STEP, LAST_PRIORITY = 100, 10, 4096
SSH_PORT = 22
SSH_TAG, HTTP_TAG = "provisioner-ssh", "provisioner-http-ports"  # on the NIC: what its NSG opened


def public_ip_enabled(settings: dict[str, Any]) -> bool:
    value = settings.get("public_ip", True)
    return value not in (False, "false", "False", "0", "off", "")


def parse_cidrs(raw: Any) -> list[str]:
    """Comma/space/newline separated CIDRs (or a list) -> normalized networks; ValueError names the bad one."""
    items = raw if isinstance(raw, list | tuple) else str(raw or "").replace(",", " ").split()
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR (e.g. 203.0.113.7/32)") from None
        if net.version != 4:  # the VM gets an IPv4 public address only
            raise ValueError(f"{text!r} is IPv6; the VM's public address is IPv4")
        if str(net) not in out:
            out.append(str(net))
    return out


def check_ssh_public_key(key: str) -> str:
    """An OpenSSH public key Azure accepts: RSA of 2048 bits or more, or Ed25519 ("Supported SSH key
    formats", learn.microsoft.com "Create and manage SSH keys for Linux VMs")."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    text = " ".join(key.split())
    try:
        loaded = load_ssh_public_key(text.encode())
    except (ValueError, TypeError, IndexError):
        raise ValueError("not an OpenSSH public key (paste the one line of your id_ed25519.pub or id_rsa.pub)") from None
    if isinstance(loaded, rsa.RSAPublicKey):
        if loaded.key_size < 2048:
            raise ValueError("Azure needs an RSA key of at least 2048 bits")
    elif not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise ValueError("Azure accepts RSA (2048 bits or more) and Ed25519 keys only")
    return text


def clean_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The account's network settings, normalized; SettingsInvalid with one message per bad field."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"public_ip": public_ip_enabled(values)}
    try:
        out["ssh_source_cidrs"] = parse_cidrs(values.get("ssh_source_cidrs"))
    except ValueError as exc:
        errors["ssh_source_cidrs"] = str(exc)
    key = str(values.get("ssh_public_key") or "").strip()
    out["ssh_public_key"] = ""
    if key:
        try:
            out["ssh_public_key"] = check_ssh_public_key(key)
        except ValueError as exc:
            errors["ssh_public_key"] = str(exc)
    if errors:
        raise SettingsInvalid(errors)
    return out


def service_ports(request: LaunchRequest) -> list[int]:
    """The workload's declared ports (not SSH, which has its own rule), once each, in order."""
    ports: list[int] = []
    for p in request.ports:
        port = int(p.get("port") or 0)
        if 0 < port < 65536 and port != SSH_PORT and port not in ports:
            ports.append(port)
    return ports


def security_rules(request: LaunchRequest, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Inbound allow rules: SSH from the account's CIDRs; the service ports from Internet, only for a
    public workload on a public address. Priorities are unique and within 100-4096."""
    rules: list[dict[str, Any]] = []

    def add(name: str, port: int, sources: list[str]) -> None:
        priority = FIRST_PRIORITY + PRIORITY_STEP * len(rules)
        if priority > LAST_PRIORITY:
            return  # 400 rules is beyond any workload's port list; the rest stay closed
        source: dict[str, Any] = ({"sourceAddressPrefix": sources[0]} if len(sources) == 1
                                  else {"sourceAddressPrefixes": sources})
        rules.append({"name": name, "properties": {
            "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": str(port),
            **source, "destinationAddressPrefix": "*", "access": "Allow", "priority": priority,
            "direction": "Inbound"}})

    cidrs = parse_cidrs(settings.get("ssh_source_cidrs"))
    if cidrs:
        add("allow-ssh", SSH_PORT, cidrs)
    if request.public_ingress and public_ip_enabled(settings):
        for port in service_ports(request):
            # "Internet": the service tag for the address space outside the virtual network
            add(f"allow-port-{port}", port, ["Internet"])
    return rules


def nsg_body(request: LaunchRequest, settings: dict[str, Any]) -> dict[str, Any]:
    """``PUT .../networkSecurityGroups/{name}``: create-or-update with the full rule list."""
    return {"location": request.region, "tags": {TAG: request.tag},
            "properties": {"securityRules": security_rules(request, settings)}}


def public_ip_body(request: LaunchRequest) -> dict[str, Any]:
    """``PUT .../publicIPAddresses/{name}``: Standard SKU, which must be Static (ARM: 400
    StandardSkuPublicIPAddressesMustBeStatic) and is closed to inbound traffic until an NSG opens it
    ("Public IP addresses", section "SKU": "Secure by default model ... closed to inbound traffic")."""
    body: dict[str, Any] = {"location": request.region, "tags": {TAG: request.tag},
                            "sku": {"name": "Standard", "tier": "Regional"},
                            "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}
    if request.zone:  # a zonal VM gets an address in its own zone
        body["zones"] = [request.zone]
    return body


def nic_body(request: LaunchRequest, settings: dict[str, Any], *, subnet: str, nsg_id: str,
             public_ip_id: str | None) -> dict[str, Any]:
    """``PUT .../networkInterfaces/{name}``: one IP configuration in the account's subnet, the VM's NSG.
    Its tags record what the NSG opened, so the pod page needs no extra call to list the rules."""
    ip_props: dict[str, Any] = {"subnet": {"id": subnet}, "privateIPAllocationMethod": "Dynamic"}
    if public_ip_id:
        ip_props["publicIPAddress"] = {"id": public_ip_id}
    opened = {int(r["properties"]["destinationPortRange"]) for r in security_rules(request, settings)}
    http = [str(p) for p in service_ports(request) if p in opened
            and next(x for x in request.ports if int(x.get("port") or 0) == p).get("protocol", "http") == "http"]
    ssh = "closed" if SSH_PORT not in opened else "open" if settings.get("ssh_public_key") else "nokey"
    tags = {TAG: request.tag, SSH_TAG: ssh, HTTP_TAG: ",".join(http)}
    return {"location": request.region, "tags": tags,
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": ip_props}],
                           "networkSecurityGroup": {"id": nsg_id}}}


def connection(*, user: str, public_ip: str, private_ip: str, nic_tags: dict[str, str]) -> dict[str, Any]:
    """What the pod page shows: SSH and the opened http ports on the public address when there is one."""
    host = public_ip or private_ip
    if not host:
        return {}
    conn: dict[str, Any] = {"host": host, "ssh": f"ssh {user}@{host}", "private_ip": private_ip}
    if nic_tags.get(SSH_TAG) == "nokey":
        conn["note"] = ("No SSH key is set on the Azure account, so nobody can log in: add yours "
                        "(\"SSH public key\") on the account page; pods launched after that get it.")
    if public_ip:
        conn["public_ip"] = public_ip
        urls = {port: f"http://{public_ip}:{port}" for port in (nic_tags.get(HTTP_TAG) or "").split(",") if port}
        if urls:
            conn["urls"] = urls
        if nic_tags.get(SSH_TAG) == "closed":
            conn["note"] = ("SSH (port 22) is closed: add your address to the Azure account's "
                            "\"SSH allowed from\" setting (e.g. 203.0.113.7/32); pods launched after that get the rule.")
    else:
        conn["note"] = "No public address (the account's \"Public address\" is off): reach it from the virtual network."
    return conn
