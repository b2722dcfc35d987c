"""AWS EC2 through boto3: GPU instance types as offers, spot or on-demand instances as pods.

* Offers: ``describe_instance_types`` (GPU types, filtered on ``GpuInfo`` client-side: the
  ``gpu-info.*`` filters are not universally supported), ``describe_instance_type_offerings``
  per availability zone, spot prices from ``describe_spot_price_history`` (latest per AZ and
  type), on-demand prices from the Price List API or the bundled table (see aws_pricing).
  On-demand is quoted per region (zone ""), spot per AZ because its price is per AZ.
* Pods: ``run_instances`` with ``ClientToken`` = pod UUID and the tag ``provisioner:pod`` =
  pod UUID; spot through ``InstanceMarketOptions``. ``external_id`` is ``"<region>/<instance id>"``
  because instance ids are regional. The container runs from UserData (docker + NVIDIA runtime,
  present on the Deep Learning AMIs).
* Notices: a running instance's scheduled events (``describe_instance_status``, see aws_events)
  ride on its RemotePod; spot interruption notices come from the in-pod agent instead.
* Errors: botocore ``ClientError`` codes become the typed errors of ``base``.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from provisioner import clock

from ..catalog import canonical_gpu_class, region_country
from . import aws_events, aws_pricing
from .aws_errors import map_error
from .aws_metrics import CW_METRIC, CW_NAMESPACE, latest_samples, metric_data_request
from .base import (
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_TERMINATED,
    CredentialField,
    GpuSample,
    InvalidCredentials,
    LaunchRequest,
    LaunchTimeout,
    NotFound,
    OfferData,
    PermanentError,
    ProviderAdapter,
    ProviderError,
    ProviderInfo,
    ProviderNotice,
    RemotePod,
    TransientError,
)
from .bootscript import container_script
from .http import DEFAULT_RETRIES
from .rest import base_url_override

TAG_KEY = "provisioner:pod"
DEFAULT_REGIONS = ("us-east-1", "us-west-2", "eu-central-1")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
# GPU families we quote. Filtering by name server-side keeps the answer small; GpuInfo decides.
GPU_TYPE_PATTERNS = ("g4dn.*", "g5.*", "g6.*", "g6e.*", "gr6.*", "p3.*", "p3dn.*", "p4d.*", "p4de.*",
                     "p5.*", "p5e.*", "p5en.*", "p6-b200.*")
# What describe_instance_types is asked for: every g* and p* type (one wildcard each is far
# cheaper to evaluate than one per family); GpuInfo then decides client-side.
SERVER_TYPE_FILTER = ("g*", "p*")
# Deep Learning AMIs ship the NVIDIA driver, docker and the NVIDIA container toolkit; newest first.
DEFAULT_AMI_NAMES = ("Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*",
                     "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023)*",
                     "Deep Learning*Ubuntu*", "Deep Learning*")
IMAGE_CACHE_SECONDS = 3600  # a new DLAMI appears every few weeks; the lookup costs a second
_image_cache: dict[tuple[str, str, str], tuple[float, tuple[str, str]]] = {}
SPOT_TERMINATION_CODES = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown")

_loader_lock = threading.Lock()
_shared_loader: list[Any] = []


def _botocore_session() -> botocore.session.Session:
    """A fresh botocore session (credentials stay per account) sharing one data loader, so
    the 4 MB EC2 model is parsed once per process instead of once per adapter."""
    session = botocore.session.get_session()
    with _loader_lock:
        if not _shared_loader:
            _shared_loader.append(session.get_component("data_loader"))
        session.register_component("data_loader", _shared_loader[0])
    return session


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def build_client(session: boto3.session.Session, service: str, region: str, endpoint_url: str | None, config: Config):
    """One botocore client. A module function so tests can wrap it (event hooks, Stubber)."""
    # a plain-http endpoint (a stand-in) has no TLS: skip loading the CA bundle (~0.5 s a client)
    verify = False if endpoint_url and endpoint_url.startswith("http://") else None
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config, verify=verify)


class AwsAdapter(ProviderAdapter):
    # boto3 rather than RestAdapter; the same hook name as the HTTP adapters (aws_errors.map_error)
    error_mapper = staticmethod(map_error)

    info = ProviderInfo(
        kind="aws",
        label="AWS EC2",
        description="GPU instances (g4dn/g5/g6 and p3/p4d/p5) on EC2, on-demand or spot, in the regions you allow.",
        supports_spot=True,
        private_registry=True,  # boot script: docker login to the image's registry
        can_stop=True,
        credential_fields=(
            CredentialField("access_key_id", "Access key ID", "An IAM user's key with EC2 (and optionally pricing:GetProducts, "
                            "cloudwatch:GetMetricData) permissions.", secret=False),
            CredentialField("secret_access_key", "Secret access key"),
            CredentialField("session_token", "Session token", "Only for temporary (STS) credentials.", required=False),
        ),
        regions_hint="us-east-1, us-west-2, eu-central-1 unless you pick regions",
    )

    def __init__(self, credentials: dict[str, Any], settings: dict[str, Any] | None = None):
        super().__init__(credentials, settings)
        self._session: boto3.session.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}

    # --- plumbing --------------------------------------------------------------------------
    @property
    def regions(self) -> list[str]:
        wanted = [r for r in (self.settings.get("regions") or self.settings.get("allowed_regions") or [])
                  if _AWS_REGION.match(str(r))]
        return wanted or list(DEFAULT_REGIONS)

    def _endpoint(self) -> str | None:
        url = base_url_override(self.settings)  # the one check, shared with the HTTP adapters
        return str(url) if url else None

    def _client(self, service: str, region: str):
        key = (service, region)
        if key not in self._clients:
            if self._session is None:
                access = str(self.credentials.get("access_key_id", "")).strip()
                secret = str(self.credentials.get("secret_access_key", "")).strip()
                if not access or not secret:
                    raise InvalidCredentials("an access key ID and a secret access key are required")
                self._session = boto3.session.Session(
                    botocore_session=_botocore_session(),
                    aws_access_key_id=access, aws_secret_access_key=secret,
                    aws_session_token=str(self.credentials.get("session_token") or "").strip() or None,
                )
            # botocore's standard mode retries throttling and 5xx with backoff, RunInstances too:
            # its ClientToken (the pod UUID) makes a repeat harmless. settings["retries"] is the one
            # retry count of every adapter (botocore "Retries" guide: total_max_attempts = the first
            # request + retries). The pricing API is a nice-to-have, so it gets one attempt only
            # (the bundled table backs it up).
            attempts = 1 if service == "pricing" else 1 + int(self.settings.get("retries", DEFAULT_RETRIES))
            config = Config(retries={"mode": "standard", "total_max_attempts": attempts},
                            connect_timeout=float(self.settings.get("connect_timeout", 5)),
                            read_timeout=float(self.settings.get("timeout", 30)),
                            user_agent_extra="ai-cloud-provisioner")
            self._clients[key] = build_client(self._session, service, region, self._endpoint(), config)
        return self._clients[key]

    def _ec2(self, region: str):
        return self._client("ec2", region)

    def _call(self, client, operation: str, *, launch: bool = False, **params: Any) -> dict[str, Any]:
        """Call one API operation and translate every botocore failure into a typed error."""
        try:
            return getattr(client, operation)(**params)
        except ClientError as exc:
            raise self.error_mapper(exc) from exc
        except ParamValidationError as exc:  # our request broke the EC2 model: a bug, not the user's
            raise PermanentError(f"invalid {operation} request: {exc}") from exc
        except NoCredentialsError as exc:
            raise InvalidCredentials(str(exc)) from exc
        except ReadTimeoutError as exc:
            if launch:  # the instance may exist: reconcile by tag instead of launching twice
                raise LaunchTimeout(f"{operation} timed out: {exc}") from exc
            raise TransientError(f"{operation} timed out: {exc}") from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise TransientError(f"cannot reach AWS: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"{operation} failed: {exc}") from exc

    def _pages(self, client, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = self._call(client, operation, **params, **({"NextToken": token} if token else {}))
            items.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return items

    def _split(self, external_id: str) -> tuple[str, str]:
        return self.split_external_id(external_id, "AWS pod")  # "<region>/<instance id>"

    # --- interface: verify and offers --------------------------------------------------------------
    def verify(self) -> None:
        # DescribeRegions needs only ec2:DescribeRegions and fails with AuthFailure on a bad key
        self._call(self._ec2(self.regions[0]), "describe_regions", RegionNames=[self.regions[0]])

    def list_offers(self) -> list[OfferData]:
        offers: list[OfferData] = []
        errors: list[ProviderError] = []
        for region in self.regions:
            try:
                offers.extend(self._region_offers(region))
            except (InvalidCredentials, PermanentError) as exc:
                # a region the account has not opted into (OptInRequired, AuthFailure there)
                # must not hide the others; it only fails the poll when every region fails
                errors.append(exc)
        if errors and len(errors) == len(self.regions):
            raise errors[0]
        return offers

    def gpu_instance_types(self, region: str) -> dict[str, dict[str, Any]]:
        """GPU instance types of ``region`` -> their describe_instance_types record (x86, NVIDIA)."""
        ec2 = self._ec2(region)
        records = self._pages(ec2, "describe_instance_types", "InstanceTypes",
                              Filters=[{"Name": "instance-type", "Values": list(SERVER_TYPE_FILTER)}])
        out: dict[str, dict[str, Any]] = {}
        for rec in records:
            gpus = (rec.get("GpuInfo") or {}).get("Gpus") or []
            if not gpus or gpus[0].get("Manufacturer") != "NVIDIA":
                continue
            if "x86_64" not in (rec.get("ProcessorInfo") or {}).get("SupportedArchitectures", []):
                continue
            out[rec["InstanceType"]] = rec
        return out

    def _region_offers(self, region: str) -> list[OfferData]:
        types = self.gpu_instance_types(region)
        if not types:
            return []
        ec2 = self._ec2(region)
        zones: dict[str, list[str]] = {}
        for o in self._pages(ec2, "describe_instance_type_offerings", "InstanceTypeOfferings",
                             LocationType="availability-zone",
                             Filters=[{"Name": "instance-type", "Values": sorted(types)}]):
            zones.setdefault(o["InstanceType"], []).append(o["Location"])
        on_demand = self.on_demand_prices(region, sorted(zones))
        spot = self.spot_prices(region, sorted(t for t in zones if "spot" in types[t].get("SupportedUsageClasses", [])))
        country = region_country(region, "")
        offers: list[OfferData] = []
        for itype, azs in sorted(zones.items()):
            rec = types[itype]
            shape = self._shape(rec)
            if shape is None:
                continue
            gpu_class, count, mem_gb = shape
            extra = {"vcpus": (rec.get("VCpuInfo") or {}).get("DefaultVCpus"),
                     "memory_gb": round(((rec.get("MemoryInfo") or {}).get("SizeInMiB") or 0) / 1024),
                     "gpu_name": rec["GpuInfo"]["Gpus"][0].get("Name", ""), "zones": sorted(azs)}
            common = dict(gpu_class=gpu_class, gpu_count=count, region=region, country=country, currency="USD",
                          instance_type=itype, gpu_memory_gb=mem_gb, supports_volumes=("ephemeral", "persistent"))
            if itype in on_demand:
                offers.append(OfferData(price_per_hour=on_demand[itype], spot=False, zone="",
                                        extra={**extra, "price_source": on_demand.source}, **common))
            for az in sorted(azs):
                price = spot.get((itype, az))
                if price is not None:
                    offers.append(OfferData(price_per_hour=price, spot=True, zone=az, extra=extra, **common))
        return offers

    @staticmethod
    def _shape(rec: dict[str, Any]) -> tuple[str, int, int | None] | None:
        gpu = rec["GpuInfo"]["Gpus"][0]
        count = sum(int(g.get("Count") or 0) for g in rec["GpuInfo"]["Gpus"])
        mem_mib = (gpu.get("MemoryInfo") or {}).get("SizeInMiB") or 0
        mem_gb = round(mem_mib / 1024) if mem_mib else None
        cls = canonical_gpu_class(str(gpu.get("Name", "")), mem_gb)
        if cls is None or count < 1:
            return None
        return cls, count, mem_gb

    def spot_prices(self, region: str, instance_types: list[str]) -> dict[tuple[str, str], Decimal]:
        """(instance type, AZ) -> the latest spot price (USD/hour), Linux only."""
        if not instance_types:
            return {}
        history = self._pages(self._ec2(region), "describe_spot_price_history", "SpotPriceHistory",
                              InstanceTypes=instance_types, ProductDescriptions=["Linux/UNIX"],
                              StartTime=clock.now())
        latest: dict[tuple[str, str], tuple[Any, Decimal]] = {}
        for h in history:
            if not str(h.get("ProductDescription", "")).startswith("Linux/UNIX"):
                continue
            key = (h["InstanceType"], h["AvailabilityZone"])
            ts = h.get("Timestamp")
            if key not in latest or (ts and latest[key][0] and ts > latest[key][0]):
                latest[key] = (ts, Decimal(str(h["SpotPrice"])))
        return {k: v[1] for k, v in latest.items()}

    def on_demand_prices(self, region: str, instance_types: list[str]) -> aws_pricing.Prices:
        """On-demand USD/hour per type: Price List API (cached), else the bundled table."""
        cache_key = str(self.credentials.get("access_key_id", ""))
        if self.settings.get("pricing_api", True) and not aws_pricing.price_cache.api_down(cache_key):
            cached = aws_pricing.price_cache.get(cache_key, region)
            if cached is None:
                try:
                    pricing = self._client("pricing", aws_pricing.PRICING_REGION)
                    cached = aws_pricing.fetch_region_prices(pricing, region, instance_types)
                except (ClientError, BotoCoreError, ProviderError):
                    aws_pricing.price_cache.mark_down(cache_key)
                    cached = None
                else:
                    aws_pricing.price_cache.put(cache_key, region, cached)
            if cached:
                return aws_pricing.Prices({t: p for t, p in cached.items() if t in instance_types}, "pricing-api")
        table = aws_pricing.table_prices(region)
        return aws_pricing.Prices({t: table[t] for t in instance_types if t in table}, "bundled-table")

    # --- interface: pods -----------------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> RemotePod:
        region = request.region
        ec2 = self._ec2(region)
        existing = self._find_by_tag(region, request.tag)
        if existing is not None:  # launched before (a retry after a timeout): same pod
            return self._remote(region, existing)
        image_id, root_device = self._image(region)
        params: dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": request.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": self.client_token(request),  # EC2 idempotency: the same token never launches twice
            "UserData": container_script(request),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": rt, "Tags": [{"Key": TAG_KEY, "Value": request.tag}, {"Key": "Name", "Value": request.name[:255]}]}
                for rt in ("instance", "volume")
            ],
            "BlockDeviceMappings": [{"DeviceName": root_device, "Ebs": {
                "VolumeSize": max(int(request.disk_gb), 30), "VolumeType": "gp3", "DeleteOnTermination": True}}],
        }
        if request.zone:
            params["Placement"] = {"AvailabilityZone": request.zone}
        if self.settings.get("key_name"):
            params["KeyName"] = str(self.settings["key_name"])
        subnet = (self.settings.get("subnet_ids") or {}).get(region)
        if subnet:
            params["SubnetId"] = subnet
        groups = self._security_groups(region, request)
        if groups:
            params["SecurityGroupIds"] = groups
        if request.spot:
            spot_options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            # No MaxPrice by default: AWS then caps at the on-demand price, so a price spike
            # does not interrupt the pod; an explicit cap can be set per account.
            if self.settings.get("spot_max_price"):
                spot_options["MaxPrice"] = str(self.settings["spot_max_price"])
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot_options}
        response = self._call(ec2, "run_instances", launch=True, **params)
        return self._remote(region, response["Instances"][0])

    @staticmethod
    def client_token(request: LaunchRequest) -> str:
        """RunInstances' ``ClientToken``: the pod UUID, qualified by the placement.

        A retry of the same attempt reuses it (EC2 then returns the original instance), but a
        failover of the same pod to another AZ or shape must not: EC2 refuses a known token
        with different parameters (IdempotentParameterMismatch), which would stop failover.
        """
        where = f"{request.region}/{request.zone}/{request.instance_type}/{int(request.spot)}"
        return str(uuid.uuid5(uuid.UUID(request.tag), where)) if _is_uuid(request.tag) else \
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"ai-cloud-provisioner:{request.tag}/{where}"))

    def _find_by_tag(self, region: str, tag: str) -> dict[str, Any] | None:
        for inst in self._instances(region, [{"Name": f"tag:{TAG_KEY}", "Values": [tag]}]):
            if inst["State"]["Name"] not in ("terminated", "shutting-down"):
                return inst
        return None

    def _instances(self, region: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reservations = self._pages(self._ec2(region), "describe_instances", "Reservations", Filters=filters)
        return [i for r in reservations for i in r.get("Instances", [])]

    def _image(self, region: str) -> tuple[str, str]:
        """(AMI id, root device name): the account's configured AMI, else the newest GPU DLAMI."""
        ec2 = self._ec2(region)
        configured = (self.settings.get("ami_ids") or {}).get(region) or self.settings.get("image_id")
        cache_key = (self._endpoint() or "", region, str(configured or ""))
        hit = _image_cache.get(cache_key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        if configured:
            images = self._call(ec2, "describe_images", ImageIds=[str(configured)]).get("Images", [])
        else:
            # one call for every acceptable name (filter values are OR-ed), then the most
            # preferred name pattern wins, newest first within it
            images = self._call(ec2, "describe_images", Owners=["amazon"], Filters=[
                {"Name": "name", "Values": list(DEFAULT_AMI_NAMES)}, {"Name": "architecture", "Values": ["x86_64"]},
                {"Name": "state", "Values": ["available"]}]).get("Images", [])
            for pattern in DEFAULT_AMI_NAMES:
                matching = [i for i in images if fnmatch.fnmatchcase(i.get("Name", ""), pattern)]
                if matching:
                    images = matching
                    break
        if not images:
            raise PermanentError(f"no GPU machine image found in {region}; set an AMI id for this account")
        newest = max(images, key=lambda i: i.get("CreationDate", ""))
        found = (newest["ImageId"], newest.get("RootDeviceName") or "/dev/sda1")
        _image_cache[cache_key] = (time.monotonic() + IMAGE_CACHE_SECONDS, found)
        return found

    def _security_groups(self, region: str, request: LaunchRequest) -> list[str]:
        """The account's groups, or one shared group per port set opening the pod's ports."""
        configured = (self.settings.get("security_group_ids") or {}).get(region)
        if configured:
            return list(configured)
        ports = sorted({int(p["port"]) for p in request.ports if p.get("port")} | {22})
        if not request.public_ingress or self.settings.get("subnet_ids"):
            return []
        name = "provisioner-ports-" + "-".join(map(str, ports))
        ec2 = self._ec2(region)
        found = self._call(ec2, "describe_security_groups", Filters=[{"Name": "group-name", "Values": [name]}])
        if found.get("SecurityGroups"):
            return [found["SecurityGroups"][0]["GroupId"]]
        try:
            group_id = self._call(ec2, "create_security_group", GroupName=name,
                                  Description="AI Cloud Provisioner pods: " + ", ".join(map(str, ports)))["GroupId"]
        except PermanentError as exc:
            if exc.code != "InvalidGroup.Duplicate":  # created concurrently by another launch
                raise
            found = self._call(ec2, "describe_security_groups", Filters=[{"Name": "group-name", "Values": [name]}])
            return [found["SecurityGroups"][0]["GroupId"]]
        self._call(ec2, "authorize_security_group_ingress", GroupId=group_id, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for p in ports])
        return [group_id]

    def get(self, external_id: str) -> RemotePod:
        region, instance_id = self._split(external_id)
        response = self._call(self._ec2(region), "describe_instances", InstanceIds=[instance_id])
        instances = [i for r in response.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances:
            raise NotFound(f"instance {instance_id} not found in {region}")
        return self._remote(region, instances[0], self._scheduled_notices(region, instances))

    def terminate(self, external_id: str) -> None:
        region, instance_id = self._split(external_id)
        try:
            self._call(self._ec2(region), "terminate_instances", InstanceIds=[instance_id])
        except NotFound:
            return

    def stop(self, external_id: str) -> None:
        region, instance_id = self._split(external_id)
        self._call(self._ec2(region), "stop_instances", InstanceIds=[instance_id])

    def start(self, external_id: str) -> None:
        region, instance_id = self._split(external_id)
        self._call(self._ec2(region), "start_instances", InstanceIds=[instance_id])

    def list_pods(self, *, spot_only: bool = False) -> list[RemotePod]:
        pods: list[RemotePod] = []
        live = ["pending", "running", "stopping", "stopped", "shutting-down"]
        for region in self.regions:
            # spot is filtered here, not with the ``instance-lifecycle`` filter: moto
            # cannot serve that filter (HTTP 500), and the list is small anyway
            instances = [i for i in self._instances(region, [{"Name": "tag-key", "Values": [TAG_KEY]},
                                                             {"Name": "instance-state-name", "Values": live}])
                         if not spot_only or i.get("InstanceLifecycle") == "spot"]
            notices = self._scheduled_notices(region, instances)
            pods += [self._remote(region, inst, notices) for inst in instances]
        return pods

    def _scheduled_notices(self, region: str, instances: list[dict[str, Any]]) -> dict[str, ProviderNotice]:
        """Scheduled events (aws_events) of the running ones among ``instances``: one
        DescribeInstanceStatus call per 100 of them, none when nothing runs. Without the
        ec2:DescribeInstanceStatus permission there are no notices rather than no pods."""
        running = [i["InstanceId"] for i in instances if (i.get("State") or {}).get("Name") == "running"]
        notices: dict[str, ProviderNotice] = {}
        for start in range(0, len(running), aws_events.MAX_IDS):
            try:
                page = self._call(self._ec2(region), "describe_instance_status",
                                  InstanceIds=running[start:start + aws_events.MAX_IDS])
            except InvalidCredentials as exc:
                if exc.code != "UnauthorizedOperation":
                    raise
                return notices
            notices.update(aws_events.notices_by_instance(page.get("InstanceStatuses") or []))
        return notices

    def _remote(self, region: str, inst: dict[str, Any], notices: dict[str, ProviderNotice] | None = None) -> RemotePod:
        state_name = inst.get("State", {}).get("Name", "")
        reason = (inst.get("StateReason") or {}).get("Code", "") or ""
        spot = inst.get("InstanceLifecycle") == "spot"
        if spot and reason in SPOT_TERMINATION_CODES and state_name in ("shutting-down", "terminated", "stopping", "stopped"):
            state = REMOTE_INTERRUPTED
        elif state_name == "running":
            state = REMOTE_RUNNING
        elif state_name == "stopped":
            state = REMOTE_STOPPED
        elif state_name in ("shutting-down", "terminated"):
            # shutting-down cannot be undone: the instance is on its way out
            state = REMOTE_TERMINATED
        elif state_name in ("pending", "stopping"):
            # transitional: the lifecycle waits for the settled state
            state = REMOTE_PROVISIONING
        else:
            state = REMOTE_FAILED
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", []) or []}
        connection: dict[str, Any] = {}
        host = inst.get("PublicIpAddress") or inst.get("PublicDnsName") or ""
        if state == REMOTE_RUNNING and host:
            connection = {"host": host, "ssh": f"ssh ubuntu@{host}",
                          "private_ip": inst.get("PrivateIpAddress", "")}
        message = (inst.get("StateReason") or {}).get("Message", "") or inst.get("StateTransitionReason", "") or ""
        return RemotePod(
            external_id=f"{region}/{inst['InstanceId']}", state=state, tag=tags.get(TAG_KEY, ""), region=region,
            connection=connection, message=message,
            raw={"instance_type": inst.get("InstanceType"), "state": state_name, "state_reason": reason,
                 "spot": spot, "zone": (inst.get("Placement") or {}).get("AvailabilityZone", "")},
            notice=(notices or {}).get(inst["InstanceId"]) if state == REMOTE_RUNNING else None,
        )

    # --- GPU utilization (CloudWatch agent) ---------------------------------------------------------
    def gpu_utilization(self, external_id: str) -> list[GpuSample] | None:
        """Latest ``CWAgent/nvidia_smi_utilization_gpu`` per GPU index, or None without the agent."""
        region, instance_id = self._split(external_id)
        cw = self._client("cloudwatch", region)
        try:
            metrics = self._pages(cw, "list_metrics", "Metrics", Namespace=CW_NAMESPACE, MetricName=CW_METRIC,
                                  Dimensions=[{"Name": "InstanceId", "Value": instance_id}])
        except (InvalidCredentials, PermanentError):
            return None  # no cloudwatch permission: not an error of the pod
        if not metrics:
            return None
        data = self._call(cw, "get_metric_data", **metric_data_request(metrics, clock.now()))
        return latest_samples(metrics, data)
