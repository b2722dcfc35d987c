"""EC2 scheduled events (instance-stop, instance-retirement, reboots, maintenance) as provider-side
notices. moto does not emulate them, so:

* the adapter's parsing is checked with botocore's Stubber, which validates both our request and
  the canned response against botocore's EC2 service model (an independent source of the shapes);
* the control plane is driven through the lifecycle services against moto, with one botocore
  hook answering DescribeInstanceStatus with an event (its response validated against the same
  model) — the notice is recorded at once and the replacement placed ACT_AHEAD before NotBefore.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from providers.adapters import aws as aws_module
from providers.adapters import aws_events
from providers.adapters.aws import TAG_KEY, AwsAdapter
from providers.adapters.base import InvalidCredentials
from providers.services import capacity_poll
from provisioner import clock
from workloads.interruptions.notices import ACT_AHEAD
from workloads.lifecycle import services
from workloads.models import Lifecycle, Pod, PodEvent, PodState

from . import test_aws_adapter as _aws
from .test_aws_adapter import A10Workload, _Http, aws_account

# the AWS adapter tests' fixtures: moto's server, botocore hooks, realistic spot prices
moto_server, moto_url, hooks, spot_market = _aws.moto_server, _aws.moto_url, _aws.hooks, _aws.spot_market

T0 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]
LIST_FILTERS = [{"Name": "tag-key", "Values": [TAG_KEY]}, {"Name": "instance-state-name", "Values": LIVE}]


def _instance(iid: str, state: str = "running", **extra) -> dict:
    return {"InstanceId": iid, "InstanceType": "g5.xlarge", "State": {"Code": 16 if state == "running" else 80, "Name": state},
            "Placement": {"AvailabilityZone": "us-east-1a"}, "Tags": [{"Key": TAG_KEY, "Value": f"pod-{iid}"}],
            "PublicIpAddress": "203.0.113.7", **extra}


def _event(code: str, not_before: datetime, description: str = "", event_id: str = "instance-event-0a1b2c3d4e5f60718") -> dict:
    return {"Code": code, "Description": description or f"The instance is scheduled for {code}",
            "InstanceEventId": event_id, "NotBefore": not_before, "NotAfter": not_before + timedelta(days=2)}


def _status(iid: str, events: list[dict]) -> dict:
    ok = {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}
    return {"InstanceId": iid, "AvailabilityZone": "us-east-1a", "Events": events,
            "InstanceState": {"Code": 16, "Name": "running"}, "InstanceStatus": ok, "SystemStatus": ok}


@pytest.fixture
def stubbed(monkeypatch):
    """An adapter whose EC2 client answers from a Stubber (no network): every request and every
    canned response is validated against botocore's EC2 model."""
    stubs: list[Stubber] = []

    def build(session, service, region, endpoint_url, config):
        client = botocore.session.get_session().create_client(
            service, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
        stub = Stubber(client)
        stub.activate()
        stubs.append(stub)
        return client

    monkeypatch.setattr(aws_module, "build_client", build)
    a = AwsAdapter({"access_key_id": "testing", "secret_access_key": "testing"}, {"allowed_regions": ["us-east-1"]})
    ec2 = a._ec2("us-east-1")
    yield a, stubs[0]
    stubs[0].assert_no_pending_responses()
    assert ec2 is a._ec2("us-east-1")


def test_list_reads_scheduled_events_of_running_instances(stubbed):
    a, stub = stubbed
    retire_at, maint_at = T0 + timedelta(days=14), T0 + timedelta(days=3)
    stub.add_response("describe_instances", {"Reservations": [{"ReservationId": "r-1", "Instances": [
        _instance("i-0aaaaaaaaaaaaaaa1"), _instance("i-0bbbbbbbbbbbbbbb2"), _instance("i-0ccccccccccccccc3", "stopped")]}]},
        {"Filters": LIST_FILTERS})
    stub.add_response("describe_instance_status", {"InstanceStatuses": [
        _status("i-0aaaaaaaaaaaaaaa1", [_event("instance-retirement", retire_at)]),
        _status("i-0bbbbbbbbbbbbbbb2", [_event("system-reboot", T0 - timedelta(days=1), "[Completed] The instance was rebooted"),
                                        _event("system-maintenance", maint_at, "Scheduled network maintenance")]),
    ]}, {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"]})  # the stopped one is not asked about
    pods = {p.external_id: p for p in a.list_pods()}
    retiring = pods["us-east-1/i-0aaaaaaaaaaaaaaa1"].notice
    assert (retiring.kind, retiring.deadline, retiring.interrupting) == ("terminate", retire_at, True)
    assert retiring.source == "EC2 scheduled event instance-retirement"
    maintained = pods["us-east-1/i-0bbbbbbbbbbbbbbb2"].notice
    assert (maintained.kind, maintained.deadline, maintained.interrupting) == ("maintenance", maint_at, False)
    assert maintained.detail == "Scheduled network maintenance"
    assert pods["us-east-1/i-0ccccccccccccccc3"].notice is None


def test_get_asks_for_the_one_instance(stubbed):
    a, stub = stubbed
    stop_at = T0 + timedelta(hours=20)
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [_instance("i-0aaaaaaaaaaaaaaa1")]}]},
                      {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1"]})
    stub.add_response("describe_instance_status", {"InstanceStatuses": [
        _status("i-0aaaaaaaaaaaaaaa1", [_event("instance-stop", stop_at)])]}, {"InstanceIds": ["i-0aaaaaaaaaaaaaaa1"]})
    notice = a.get("us-east-1/i-0aaaaaaaaaaaaaaa1").notice
    assert (notice.kind, notice.deadline) == ("stop", stop_at)


def test_no_running_instance_costs_no_status_call_and_a_missing_permission_costs_no_pods(stubbed):
    a, stub = stubbed
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [_instance("i-0ccccccccccccccc3", "stopped")]}]},
                      {"Filters": LIST_FILTERS})
    assert [p.notice for p in a.list_pods()] == [None]  # no DescribeInstanceStatus queued: none was made
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [_instance("i-0aaaaaaaaaaaaaaa1")]}]},
                      {"Filters": LIST_FILTERS})
    stub.add_client_error("describe_instance_status", "UnauthorizedOperation", "You are not authorized to perform "
                          "this operation.", http_status_code=403)
    (pod,) = a.list_pods()
    assert pod.state == "running" and pod.notice is None
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [_instance("i-0aaaaaaaaaaaaaaa1")]}]},
                      {"Filters": LIST_FILTERS})
    stub.add_client_error("describe_instance_status", "AuthFailure", "AWS was not able to validate the provided "
                          "access credentials", http_status_code=401)
    with pytest.raises(InvalidCredentials):  # a bad key is not a missing permission
        a.list_pods()


def test_which_event_counts():
    soon, later = T0 + timedelta(hours=2), T0 + timedelta(days=5)
    pick = aws_events.instance_notice
    # an event that ends the instance wins over an earlier reboot
    assert pick([_event("system-reboot", soon), _event("instance-stop", later)]).kind == "stop"
    assert pick([_event("instance-reboot", later), _event("system-reboot", soon)]).deadline == soon
    assert pick([_event("instance-retirement", soon, "[Canceled] retirement"),
                 _event("instance-stop", soon, "[Completed] stopped")]) is None
    assert pick([{"Code": "something-new", "NotBefore": soon}]) is None  # an unknown code is not guessed at
    assert pick([]) is None


# --- the control plane acts on it -----------------------------------------------------------------


@pytest.mark.django_db
def test_retirement_is_recorded_at_once_and_replaced_ahead_of_not_before(
        tenant, project, owner, moto_url, hooks, spot_market, django_capture_on_commit_callbacks):
    account = aws_account(tenant, moto_url)
    capacity_poll(accounts=[account])
    w = A10Workload(tenant=tenant, project=project, owner=owner, lifecycle=Lifecycle.SERVICE)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    services.pod_provision(pod_id=str(pod.pk))
    with clock.frozen() as advance:
        pod = services.pod_refresh(pod_id=str(pod.pk))
        assert pod.state == PodState.RUNNING and not PodEvent.objects.filter(pod=pod, kind="notice").exists()
        iid = pod.external_id.split("/")[1]
        not_before = (clock.now() + timedelta(days=14)).replace(microsecond=0)
        model = botocore.session.get_session().get_service_model("ec2").operation_model("DescribeInstanceStatus")

        def scheduled(**kw):
            asked = hooks.params("DescribeInstanceStatus")[-1]["InstanceIds"]  # the old pod, or its replacement
            body = {"InstanceStatuses": [_status(i, [_event("instance-retirement", not_before, "The instance is "
                                                            "running on degraded hardware")] if i == iid else [])
                                         for i in asked]}
            validate_parameters(body, model.output_shape)  # the shape EC2 answers, per botocore's model
            return _Http(200), {**body, "ResponseMetadata": {"HTTPStatusCode": 200}}

        hooks.on("before-call.ec2.DescribeInstanceStatus", scheduled)
        with django_capture_on_commit_callbacks(execute=True):
            pod = services.pod_refresh(pod_id=str(pod.pk))
        event = PodEvent.objects.get(pod=pod, kind="notice")
        assert event.message.startswith("Interruption notice from AWS (terminate) [EC2 scheduled event "
                                        "instance-retirement]: the provider takes this pod at ")
        assert "13 d 23 h from now" in event.message  # NotBefore is whole seconds
        assert pod.interruption_deadline == not_before and pod.state == PodState.RUNNING
        assert not Pod.objects.filter(replaces=pod).exists()  # two weeks early: not yet

        with django_capture_on_commit_callbacks(execute=True):
            services.pod_refresh(pod_id=str(pod.pk))  # seen again: still nothing, and no second event
        assert PodEvent.objects.filter(pod=pod, kind="notice").count() == 1
        assert not Pod.objects.filter(replaces=pod).exists()

        advance(seconds=(timedelta(days=14) - ACT_AHEAD).total_seconds() + 60)
        with django_capture_on_commit_callbacks(execute=True):
            services.pod_refresh(pod_id=str(pod.pk))
        new = Pod.objects.get(replaces=pod)
        assert new.placement_override.get("purpose") == "notice"
        assert PodEvent.objects.filter(pod=pod, kind="replace", message__contains=str(new.pk)[:8]).exists()
        with django_capture_on_commit_callbacks(execute=True):
            services.pod_refresh(pod_id=str(pod.pk))
        assert Pod.objects.filter(replaces=pod).count() == 1  # placed once
