"""botocore ClientError codes -> the typed errors of ``base`` (``e.response['Error']['Code']``)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from .base import (
    CapacityUnavailable,
    InvalidCredentials,
    NotFound,
    PermanentError,
    ProviderError,
    QuotaExceeded,
    StopNotPossible,
    TransientError,
)

CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
                  "SpotMaxPriceTooLow", "InsufficientReservedInstanceCapacity", "Unsupported"}
QUOTA_CODES = {"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded",
               "PendingVerification", "SpotInstanceRequestLimitExceeded"}
AUTH_CODES = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
              "OptInRequired", "AccessDenied", "AccessDeniedException", "ExpiredToken",
              "UnrecognizedClientException", "Blocked"}
TRANSIENT_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "ServiceUnavailable",
                   "InternalError", "Unavailable", "RequestTimeout", "InternalFailure"}
NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
# StopInstances answers UnsupportedOperation for an instance that can only be terminated: "You can't
# stop the Spot Instance '…' because it is associated with a one-time Spot Instance request" and
# "The instance '…' does not have an 'ebs' root device type and cannot be stopped" (EC2 API Reference,
# StopInstances: "You can't stop or hibernate instance store-backed instances"; EC2 User Guide, "Stop
# a Spot Instance": only instances of persistent Spot requests can be stopped). moto stops them anyway.
STOP_NOT_POSSIBLE_CODES = {"UnsupportedOperation"}


def map_error(exc: ClientError) -> ProviderError:
    """The typed error for a botocore ClientError (``e.response['Error']['Code']``)."""
    err = exc.response.get("Error", {}) or {}
    code = str(err.get("Code", ""))
    message = str(err.get("Message", "")) or str(exc)
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if code in STOP_NOT_POSSIBLE_CODES and getattr(exc, "operation_name", "") == "StopInstances":
        return StopNotPossible(message, status=status, code=code)
    if code in CAPACITY_CODES:
        return CapacityUnavailable(message, status=status, code=code)
    if code in QUOTA_CODES:
        return QuotaExceeded(message, status=status, code=code)
    if code in AUTH_CODES:
        return InvalidCredentials(message, status=status, code=code)
    if code in NOT_FOUND_CODES:
        return NotFound(message, status=status, code=code)
    if code in TRANSIENT_CODES or (status is not None and status >= 500) or code.isdigit() and int(code) >= 500:
        return TransientError(message, status=status, code=code)
    return PermanentError(f"{code}: {message}" if code else message, status=status, code=code)
