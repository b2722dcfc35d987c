"""Hetzner adapter: dedicated GPU servers (GEX line) through the Robot webservice.

The Hetzner *Cloud* API has no GPU server types; GPUs are only sold as dedicated root
servers ordered through Robot (``https://robot-ws.your-server.de``). There is **no OpenAPI
spec for Robot** in ../shared/specs: everything here follows ../shared/reference/providers.md
§5 (paths, fields, error shape), plus two facts taken from the reference client it names
(MathiasPius/hrobot-rs): every object in a response is wrapped in a key naming its type
(``[{"product": {...}}]``, ``{"transaction": {...}}``), and request bodies are form-encoded.

* Auth: HTTP Basic with the Robot *webservice* user and password (not the Robot login).
* Catalogue: ``GET /order/server/product`` (standard products, prices per location:
  ``price`` {net, gross, hourly_net, hourly_gross} monthly/hourly, ``price_setup`` {net, gross})
  and ``GET /order/server_market/product`` (auction servers: ``price``/``price_setup`` net,
  monthly, no setup fee usually). Only products whose description names a GPU we know become
  offers. Prices are EUR, net of VAT; ``monthly_price`` and ``setup_fee`` travel with each
  offer so that placement can amortize them (ProviderInfo says monthly_billed/slow_delivery).
* Order: ``POST /order/server/transaction`` (``product_id``, ``authorized_key[]``, ``location``,
  ``dist``, ``lang``, ``comment``, ``test``) -> ``{"transaction": {id, status "in process" ->
  "ready", server_number, server_ip, ...}}``; market orders use ``/order/server_market/...``.
  Delivery takes minutes to days, so a launch returns a provisioning pod at once.
* Idempotency: the order ``comment`` carries ``provisioner-pod=<uuid>`` (the only free-text
  field of an order; Hetzner notes that comments may add manual review time). A launch first
  looks through the recent transactions (Robot lists the last 30 days) for that comment.
* Status: transaction, then ``GET /server/{server_number}`` (``status`` ready / in process,
  ``cancelled``). "Terminate" = ``POST /server/{n}/cancellation`` with
  ``cancellation_date=now``; billing stops at the cancellation (Robot bills by the hour, capped
  at the monthly price: see billing.rules).
* Errors: ``{"error": {"status", "code", "message"}}``; ``RATE_LIMIT_EXCEEDED`` adds
  ``max_request``/``interval`` (seconds) which we use as Retry-After. providers.md names no
  out-of-stock code; codes containing NOT_AVAILABLE / OUT_OF_STOCK are read as no capacity.
* Robot installs an OS only: there is no user-data hook. Orders therefore ask for an Ubuntu LTS
  image (never the rescue system, which boots from RAM and runs nothing of ours) and the
  ``primary_ipv4`` addon (Robot delivers IPv6-only servers without it, doc "Server ordering /
  Notes"); once delivered, :meth:`HetznerAdapter.bootstrap` starts the workload over SSH with the
  account's key (see ``hetzner_bootstrap``); the pod runs only after that succeeded.
* No GPU metrics API: utilization comes from the in-host NVML agent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
from django.core.cache import cache

from providers.catalog import canonical_gpu_class, region_country

from .base import (
    REMOTE_FAILED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_TERMINATED,
    CapacityUnavailable,
    CredentialField,
    InvalidCredentials,
    LaunchRequest,
    LaunchTimeout,
    NotFound,
    NotSupported,
    OfferData,
    PermanentError,
    ProviderError,
    ProviderInfo,
    QuotaExceeded,
    RemotePod,
    TransientError,
)
from .hetzner_bootstrap import (
    BootstrapFailed,
    BootstrapRetry,
    SshTarget,
    container_logs,
    load_private_key,
    md5_fingerprint,
)
from .hetzner_bootstrap import bootstrap as run_bootstrap
from .http import TAG_KEY, ApiClient, error_envelope
from .rest import RestAdapter

HOURS_PER_MONTH = Decimal("730")
REFUSAL_TTL = 7 * 24 * 3600  # a refused password stays refused until the user enters it again
MARKET = "market:"
COMMENT_PREFIX = f"{TAG_KEY}="
_COUNT = re.compile(r"(\d+)\s*x\s*(nvidia|amd|gpu)", re.I)
_UBUNTU_LTS = re.compile(r"^Ubuntu (\d+\.\d+)(?:\.\d+)? LTS", re.I)


def map_error(response: httpx.Response, body: Any) -> ProviderError | None:
    envelope = error_envelope(body)
    if envelope is None:
        return None
    err, code, message = envelope
    status = response.status_code
    if code == "RATE_LIMIT_EXCEEDED":
        interval = err.get("interval")
        return TransientError(message, status=status, code=code, retry_after=float(interval) if interval else None)
    if code == "UNAUTHORIZED" or status == 401:
        return InvalidCredentials(message, status=status, code=code)
    if code.endswith("NOT_FOUND"):
        return NotFound(message, status=status, code=code)
    if "NOT_AVAILABLE" in code or "OUT_OF_STOCK" in code:
        return CapacityUnavailable(message, status=status, code=code)
    if "LIMIT" in code:  # e.g. an order limit on the account
        return QuotaExceeded(message, status=status, code=code)
    if code == "INVALID_INPUT":
        missing, invalid = err.get("missing"), err.get("invalid")
        return PermanentError(f"{message} (missing: {missing}, invalid: {invalid})", status=status, code=code)
    if code in ("CONFLICT", "SERVER_CANCELLATION_RESERVE_LOCATION_FALSE_ONLY"):
        return PermanentError(message, status=status, code=code)
    return None


def _unwrap(item: Any, key: str) -> dict[str, Any]:
    return item.get(key, item) if isinstance(item, dict) else {}


def _d(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal("0")


def gpu_of(description: list[str] | str) -> tuple[str | None, int]:
    """(canonical class, count) from a product's description lines."""
    lines = description if isinstance(description, list) else [description]
    for line in lines:
        cls = canonical_gpu_class(str(line))
        if cls:
            m = _COUNT.search(str(line))
            return cls, int(m.group(1)) if m else 1
    return None, 0


class HetznerAdapter(RestAdapter):
    default_base_url = "https://robot-ws.your-server.de"
    error_mapper = staticmethod(map_error)

    info = ProviderInfo(
        kind="hetzner",
        label="Hetzner (dedicated GPU servers)",
        description="Dedicated GPU servers (GEX44 RTX 4000 Ada, GEX130 RTX 6000 Ada) in Germany and "
                    "Finland. Monthly billing plus a setup fee and hours-to-days delivery: good for "
                    "long-running services, poor for short jobs.",
        supports_spot=False,
        private_registry=True,  # the SSH bootstrap runs docker login (hetzner_bootstrap)
        currency="EUR",
        monthly_billed=True,
        slow_delivery=True,
        can_stop=False,
        bootstrap_over_ssh=True,
        credential_fields=(
            CredentialField("user", "Webservice user", secret=False,
                            help="Robot → Settings → Webservice and app settings (not your Robot login)."),
            CredentialField("password", "Webservice password",
                            help="Robot blocks the IP address that tries for 10 minutes after 3 failed logins, so "
                                 "a refused password is never retried automatically: check it before you submit, "
                                 "and enter it again here once corrected."),
            CredentialField("ssh_key_fingerprint", "SSH key fingerprint", secret=False,
                            help="Fingerprint of a key stored in Robot; it is installed on ordered servers."),
            CredentialField("ssh_private_key", "SSH private key", multiline=True,
                            help="The private half of that key (OpenSSH format, no passphrase): the worker "
                                 "logs in with it to install the driver and start your container."),
        ),
        regions_hint="DE (FSN1, NBG1), FI (HEL1)",
    )

    def make_client(self, name: str) -> ApiClient:
        user = str(self.credentials.get("user", ""))
        password = str(self.credentials.get("password", ""))  # Robot: HTTP basic auth

        def mapper(response: httpx.Response, body: Any) -> ProviderError | None:
            error = map_error(response, body)
            if isinstance(error, InvalidCredentials) or response.status_code == 401:  # any body, or none
                cache.set(self._refusal_key(), error.message or "Unauthorized", REFUSAL_TTL)
            return error

        return self.new_client(self.base_url, secret=f"{user}:{password}", auth=(user, password), error_mapper=mapper)

    # --- failed logins: Robot locks the caller's IP after three ------------------------------
    # Robot webservice doc, "Preface / Errors / Authentication error": "the IP from which you
    # attempt to access will be blocked for 10 minutes after 3 failed login attempts". That IP is
    # our worker's, shared by every account: once Robot refused a user/password, no automatic
    # call (polls, syncs, reconciliation) sends it again; only the user's own verification does.
    def _refusal_key(self) -> str:
        secret = f"{self.credentials.get('user', '')}:{self.credentials.get('password', '')}"
        return "robot-refused:" + hashlib.sha256(secret.encode()).hexdigest()

    def _guard(self) -> None:
        refused = cache.get(self._refusal_key())
        if refused:
            raise InvalidCredentials(f"Robot refused these webservice credentials ({refused}); they are not retried "
                                     "automatically, because Robot blocks our IP for 10 minutes after 3 failed "
                                     "logins. Enter them again (Providers → the account → Credentials).")

    # --- interface --------------------------------------------------------------------------
    def verify(self) -> None:
        if not self.credentials.get("user") or not self.credentials.get("password"):
            raise InvalidCredentials("the Robot webservice user and password are required")
        self._ssh_key()  # checked locally first: a bad key costs no login attempt
        # the user's explicit check: sent even after a refusal (the wizard warns about the lock)
        try:
            self.client.request("GET", "/server")
        except NotFound:  # Robot answers SERVER_NOT_FOUND when the account has no server yet
            pass
        cache.delete(self._refusal_key())

    def list_offers(self) -> list[OfferData]:
        self._guard()
        # one after the other: with refused credentials, one failed login instead of two
        results = [self.client.get_json("/order/server/product") or []]
        if self.settings.get("market", True):
            results.append(self._market_products())
        offers: list[OfferData] = []
        preferred = str(self.settings.get("dist") or "")
        for item in results[0]:
            p = _unwrap(item, "product")
            cls, count = gpu_of(p.get("description") or [])
            if cls is None or pick_dist(p.get("dist") or [], preferred) is None:
                continue  # no GPU, or no OS image we can bootstrap
            for price in p.get("prices") or []:
                monthly = _d((price.get("price") or {}).get("net"))
                hourly = _d((price.get("price") or {}).get("hourly_net")) or (monthly / HOURS_PER_MONTH)
                offers.append(self._offer(cls, count, str(price["location"]), hourly, monthly,
                                          _d((price.get("price_setup") or {}).get("net")), str(p["id"]), p))
        for item in results[1] if len(results) > 1 else []:
            p = _unwrap(item, "product")
            cls, count = gpu_of(p.get("description") or [])
            if cls is None or pick_dist(p.get("dist") or [], preferred) is None:
                continue  # auction servers often offer the rescue system only
            location = str(p.get("datacenter") or "").split("-")[0] or "FSN1"
            monthly = _d(p.get("price"))
            hourly = _d(p.get("price_hourly")) or (monthly / HOURS_PER_MONTH)
            offers.append(self._offer(cls, count, location, hourly, monthly, _d(p.get("price_setup")),
                                      f"{MARKET}{p['id']}", p))
        return offers

    def _market_products(self) -> list[Any]:
        try:
            return self.client.get_json("/order/server_market/product") or []
        except NotFound:  # an empty auction answers NOT_FOUND
            return []

    def _offer(self, cls: str, count: int, location: str, hourly: Decimal, monthly: Decimal, setup: Decimal,
               instance_type: str, product: dict[str, Any]) -> OfferData:
        return OfferData(
            gpu_class=cls, gpu_count=count, region=location, country=region_country(location), currency="EUR",
            price_per_hour=hourly.quantize(Decimal("0.0001"), ROUND_HALF_UP), spot=False, available=None,
            availability="LOW", instance_type=instance_type, monthly_price=monthly.quantize(Decimal("0.01")),
            setup_fee=setup.quantize(Decimal("0.01")), supports_volumes=("ephemeral", "persistent"),
            extra={"product": product.get("name", ""), "delivery": "hours to days", "billing": "monthly"},
        )

    def _ssh_key(self) -> str:
        """The account's SSH private key, checked against the fingerprint orders install."""
        fingerprint = str(self.credentials.get("ssh_key_fingerprint", "")).strip().lower()
        if not fingerprint:
            raise InvalidCredentials("Hetzner orders need the fingerprint of an SSH key stored in Robot")
        text = str(self.credentials.get("ssh_private_key", "")).strip()
        if not text:
            raise InvalidCredentials("the SSH private key is required: without it the worker cannot start "
                                     "the workload on a delivered server")
        try:
            key = load_private_key(text)
        except ValueError as exc:
            raise InvalidCredentials(f"SSH private key: {exc}") from exc
        if md5_fingerprint(key) != fingerprint:
            raise InvalidCredentials(f"the SSH private key's fingerprint is {md5_fingerprint(key)}, not "
                                     f"{fingerprint}: servers would be ordered with a key we cannot log in with")
        return text

    def _dist(self, product_id: str, market: bool) -> str:
        """The OS image to order: the account's ``dist`` or the newest Ubuntu LTS the product lists."""
        path = f"/order/server_market/product/{product_id}" if market else f"/order/server/product/{product_id}"
        dists = [str(d) for d in _unwrap(self.client.get_json(path), "product").get("dist") or []]
        chosen = pick_dist(dists, str(self.settings.get("dist") or ""))
        if chosen is None:
            raise PermanentError(f"Robot offers no Ubuntu LTS image for product {product_id} (only: "
                                 f"{', '.join(dists) or 'none'}); the workload cannot be started on it")
        return chosen

    def launch(self, request: LaunchRequest) -> RemotePod:
        self._guard()
        existing = self._find_by_tag(request.tag)
        if existing is not None:
            return existing
        try:  # never order (and pay for) a server we could not log in to
            self._ssh_key()
        except InvalidCredentials as exc:
            raise PermanentError(exc.message) from exc
        fingerprint = str(self.credentials["ssh_key_fingerprint"]).strip()
        market = request.instance_type.startswith(MARKET)
        product_id = request.instance_type[len(MARKET):] if market else request.instance_type
        # field names and meanings: Robot webservice doc, "POST /order/server/transaction", Input
        form: dict[str, Any] = {
            "product_id": product_id, "authorized_key[]": [fingerprint],
            "dist": self._dist(product_id, market), "lang": "en",
            # without this addon Robot delivers an IPv6-only server (doc "Server ordering / Notes")
            "addon[]": ["primary_ipv4"],
            # the doc warns that a comment sends the order to manual processing (slower
            # delivery); it is Robot's only free-text field, and the idempotency tag needs one
            "comment": f"{COMMENT_PREFIX}{request.tag}",
            # a real order spends money; the account setting ``order_test`` makes it a dry run
            "test": "true" if self.settings.get("order_test") else "false",
        }
        if not market:
            form["location"] = request.region
        path = "/order/server_market/transaction" if market else "/order/server/transaction"
        try:
            body = self.client.post_json(path, data=form, idempotent=False)
        except (LaunchTimeout, TransientError):
            try:
                found = self._find_by_tag(request.tag)
            except ProviderError:
                found = None
            if found is not None:
                return found
            raise
        return self._from_transaction(_unwrap(body, "transaction"), market)

    def _transactions(self) -> list[tuple[dict[str, Any], bool]]:
        out: list[tuple[dict[str, Any], bool]] = []
        for path, market in (("/order/server/transaction", False), ("/order/server_market/transaction", True)):
            try:
                items = self.client.get_json(path) or []
            except NotFound:  # TRANSACTION_NOT_FOUND when there are none
                items = []
            out += [(_unwrap(i, "transaction"), market) for i in items]
        return out

    @staticmethod
    def _tag_of(tx: dict[str, Any]) -> str:
        comment = str(tx.get("comment") or "")
        return comment[len(COMMENT_PREFIX):].strip() if comment.startswith(COMMENT_PREFIX) else ""

    def _find_by_tag(self, tag: str) -> RemotePod | None:
        for tx, market in self._transactions():
            if self._tag_of(tx) == tag and tx.get("status") != "cancelled":
                return self._from_transaction(tx, market)
        return None

    def _from_transaction(self, tx: dict[str, Any], market: bool) -> RemotePod:
        external_id = f"{MARKET}{tx['id']}" if market else str(tx["id"])
        status = str(tx.get("status", ""))
        region = str((tx.get("product") or {}).get("location") or "")
        if status == "cancelled":
            return RemotePod(external_id=external_id, state=REMOTE_FAILED, tag=self._tag_of(tx), region=region,
                             message="order cancelled by Hetzner", raw={"transaction": status})
        if status != "ready" or not tx.get("server_number"):
            return RemotePod(external_id=external_id, state=REMOTE_PROVISIONING, tag=self._tag_of(tx), region=region,
                             message="order in process (dedicated servers take hours to days)",
                             raw={"transaction": status})
        try:
            server = _unwrap(self.client.get_json(f"/server/{tx['server_number']}"), "server")
        except NotFound:
            return RemotePod(external_id=external_id, state=REMOTE_TERMINATED, tag=self._tag_of(tx), region=region,
                             message="server no longer in the account", raw={"transaction": status})
        if server.get("cancelled"):
            state = REMOTE_TERMINATED
        elif server.get("status") == "ready":
            state = REMOTE_RUNNING
        else:
            state = REMOTE_PROVISIONING
        ip = server.get("server_ip") or tx.get("server_ip")
        connection: dict[str, Any] = {}
        if state == REMOTE_RUNNING and ip:
            # the server's SSH host keys as Robot lists them: the bootstrap accepts no other
            host_keys = [str(_unwrap(k, "key").get("fingerprint", "")).lower() for k in tx.get("host_key") or []]
            connection = {"host": ip, "ssh": f"ssh root@{ip}", "host_keys": [k for k in host_keys if k]}
        return RemotePod(
            external_id=external_id, state=state, tag=self._tag_of(tx),
            region=str(server.get("dc") or region).split("-")[0], connection=connection,
            message=f"server {server.get('server_number')} {server.get('status')}",
            raw={"transaction": status, "server_number": server.get("server_number"), "paid_until": server.get("paid_until")},
        )

    def _transaction(self, external_id: str) -> tuple[dict[str, Any], bool]:
        market = external_id.startswith(MARKET)
        tx_id = external_id[len(MARKET):] if market else external_id
        path = f"/order/server_market/transaction/{tx_id}" if market else f"/order/server/transaction/{tx_id}"
        return _unwrap(self.client.get_json(path), "transaction"), market

    def get(self, external_id: str) -> RemotePod:
        self._guard()
        tx, market = self._transaction(external_id)
        return self._from_transaction(tx, market)

    def terminate(self, external_id: str) -> None:
        self._guard()
        try:
            tx, _ = self._transaction(external_id)
        except NotFound:
            return
        if tx.get("status") == "cancelled":
            return
        if not tx.get("server_number"):
            # Robot has no API to withdraw an order in process; try again once it is delivered
            raise TransientError("the order is still being processed; it can be cancelled once the server is delivered",
                                 retry_after=600)
        try:
            server = _unwrap(self.client.get_json(f"/server/{tx['server_number']}"), "server")
            if server.get("cancelled"):
                return
            # doc "POST /server/{server-number}/cancellation": reserve_location is mandatory where
            # the location could be reserved, and must be 'false' where not: 'false' fits both
            self.client.request("POST", f"/server/{tx['server_number']}/cancellation",
                                data={"cancellation_date": "now", "reserve_location": "false"}, idempotent=True)
        except NotFound:
            return

    def list_pods(self) -> list[RemotePod]:
        self._guard()
        return [self._from_transaction(tx, market) for tx, market in self._transactions()
                if self._tag_of(tx) and tx.get("status") != "cancelled"]

    # --- workload bootstrap (Robot installs an OS only) ---------------------------------------
    def bootstrap(self, *, connection: dict[str, Any], request: LaunchRequest, progress: Callable[[str], None],
                  agent_env: dict[str, str] | None = None) -> dict[str, Any]:
        """Start ``request``'s container on the delivered server over SSH (see hetzner_bootstrap).
        Raises BootstrapRetry (not ready yet) or BootstrapFailed (give up: cancel the order)."""
        try:
            target = self._ssh_target(connection)
        except InvalidCredentials as exc:
            raise BootstrapFailed("connect", exc.message) from exc
        if not target.host:
            raise BootstrapRetry("the server has no IPv4 address yet")
        return run_bootstrap(target, request, progress, agent_env=agent_env, settings=self.settings)

    def _ssh_target(self, connection: Mapping[str, Any]) -> SshTarget:
        """The delivered server as the pod recorded it: its address, the host keys Robot listed
        and the one pinned at the first connection (no other key is accepted), the account's key."""
        return SshTarget(host=str(connection.get("host") or ""), private_key=self._ssh_key(),
                         port=int(self.settings.get("ssh_port") or 22),
                         username=str(self.settings.get("ssh_user") or "root"),
                         host_keys=list(connection.get("host_keys") or []), pinned=str(connection.get("host_key") or ""))

    def logs(self, external_id: str, tail_lines: int, connection: Mapping[str, Any] | None = None) -> str:
        """Robot has no logs API, but the server is the workload's own: the container's output is
        read over SSH (``docker logs --tail``), with the bootstrap's host-key check."""
        connection = connection or {}
        container = str(connection.get("container") or "")
        if not container or not connection.get("host"):
            raise NotSupported("the workload's container has not been started on the server yet "
                               "(the bootstrap starts it once Hetzner delivers the server)")
        target = self._ssh_target(connection)
        if not (target.host_keys or target.pinned):
            raise ProviderError("no host key is known for this server: its logs are not read over an unverified connection")
        try:
            return container_logs(target, container, tail_lines)
        except BootstrapRetry as exc:
            raise ProviderError(f"the server does not answer over SSH ({exc})") from exc
        except BootstrapFailed as exc:
            raise ProviderError(str(exc)) from exc


def pick_dist(dists: list[str], preferred: str = "") -> str | None:
    """``preferred`` when the product offers it, else the newest Ubuntu LTS image it lists."""
    if preferred:
        return preferred if preferred in dists else None
    ubuntu = [(tuple(int(x) for x in m.group(1).split(".")), d) for d in dists
              if (m := _UBUNTU_LTS.match(d))]
    return max(ubuntu)[1] if ubuntu else None
