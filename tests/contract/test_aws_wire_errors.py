"""AWS: what moto does not emulate, answered the way EC2 answers on the wire (issue 13 §1).

moto keeps boto3 honest about request shapes (tests/providers/test_aws_adapter.py also validates
every RunInstances against botocore's EC2 model), but it never refuses for capacity, quota, an
unopted region or an unstoppable instance. Here those answers are produced as EC2's Query API
sends them -- an XML ``<Response><Errors><Error><Code>…`` body with the HTTP status EC2 uses (EC2
API Reference, "Error codes for the Amazon EC2 API": client errors are 4xx, server errors such as
InsufficientInstanceCapacity 5xx) -- and go through botocore's own parser and retry policy before
the adapter's error mapping sees them. The old tests build the ClientError by hand, which skips
both.
"""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse

from providers.adapters.aws import AwsAdapter
from providers.adapters.base import (
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotSupported,
    PermanentError,
    QuotaExceeded,
    StopNotPossible,
    TransientError,
)
from tests.providers.test_aws_adapter import CREDS, hooks  # noqa: F401 - botocore event hooks on every client
from tests.standins import moto_server as _moto

moto_server = _moto.moto_server
moto_url = _moto.moto_url


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **kw):
        yield self._body


def ec2_error(status: int, code: str, message: str):
    """An EC2 Query API error exactly as it travels (EC2 API Reference, "Example error response")."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID>"
            "</Response>").encode()
    return AWSResponse("https://ec2.us-east-1.amazonaws.com/", status, {"Content-Type": "text/xml;charset=UTF-8"}, _Raw(body))


# (operation, HTTP status, code, message as EC2 words it) -> typed error, fails over to the next candidate?
CASES = [
    ("RunInstances", 500, "InsufficientInstanceCapacity",
     "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested (us-east-1a).",
     CapacityUnavailable, True),
    ("RunInstances", 400, "Unsupported",
     "Your requested instance type (p5.48xlarge) is not supported in your requested Availability Zone (us-east-1e).",
     CapacityUnavailable, True),
    ("RunInstances", 400, "VcpuLimitExceeded",
     "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance bucket.",
     QuotaExceeded, True),
    ("RunInstances", 400, "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded", QuotaExceeded, True),
    ("RunInstances", 400, "SpotMaxPriceTooLow", "Your Spot request price of 0.01 is lower than the minimum required",
     CapacityUnavailable, True),
    ("RunInstances", 401, "AuthFailure", "AWS was not able to validate the provided access credentials",
     InvalidCredentials, False),
    ("RunInstances", 400, "InvalidParameterValue", "Value (g9.mega) for parameter instanceType is invalid.",
     PermanentError, False),
    ("RunInstances", 503, "RequestLimitExceeded", "Request limit exceeded.", TransientError, True),
    ("StopInstances", 400, "UnsupportedOperation",
     "You can't stop the Spot Instance 'i-0123' because it is associated with a one-time Spot Instance request.",
     StopNotPossible, False),
]


def _adapter(url: str) -> AwsAdapter:
    return AwsAdapter(dict(CREDS), {"base_url": url, "allowed_regions": ["us-east-1"], "retries": 3})


@pytest.mark.parametrize("operation,status,code,message,error,failover", CASES, ids=[c[2] for c in CASES])
def test_ec2_wire_errors_map_to_typed_errors(moto_url, hooks, operation, status, code, message, error, failover):  # noqa: F811
    sent: list[str] = []

    def refuse(**kw):
        sent.append(operation)
        return ec2_error(status, code, message)

    hooks.on(f"before-send.ec2.{operation}", refuse)  # hooks attach when the adapter builds its clients
    a = _adapter(moto_url)
    request = LaunchRequest(tag="77777777-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="A10",
                            gpu_count=1, region="us-east-1", instance_type="g5.xlarge", spot=code.startswith("Spot"))
    if operation == "StopInstances":
        pod = a.launch(request)
        call = lambda: a.stop(pod.external_id)  # noqa: E731
    else:
        call = lambda: a.launch(request)  # noqa: E731
    with pytest.raises(error) as caught:
        call()
    assert caught.value.code == code and message.split(" (")[0] in str(caught.value)
    assert caught.value.failover is failover
    if error is StopNotPossible:
        assert isinstance(caught.value, NotSupported)  # the reaper falls back to terminate
    if status >= 500:
        # botocore's standard mode retries 5xx and throttling: settings["retries"] 3 means 3 retries
        # after the first send (total_max_attempts = 4). Safe for RunInstances only because every
        # attempt carries the same ClientToken; then the typed error fails over.
        assert len(sent) == 4
        tokens = {p.get("ClientToken") for p in hooks.params("RunInstances")}
        assert len(tokens) == 1 and None not in tokens
    else:
        assert len(sent) == 1  # a client error is never retried


def test_unopted_region_surfaces_with_its_own_code(moto_url, hooks):  # noqa: F811
    """OptInRequired (401, "You are not subscribed to this service") answers for a region the
    account has not enabled. With that region the only one allowed, the account is refused with
    EC2's own code and words (a multi-region poll skips it: test_aws_adapter.py)."""
    hooks.on("before-send.ec2.DescribeInstances", lambda **kw: ec2_error(
        401, "OptInRequired", "You are not subscribed to this service. Please go to http://aws.amazon.com to subscribe."))
    with pytest.raises(InvalidCredentials) as caught:
        _adapter(moto_url).list_pods()
    assert caught.value.code == "OptInRequired" and "not subscribed" in str(caught.value)
