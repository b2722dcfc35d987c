"""Unit tests of the placement rules: ``rank_offers`` is pure, so these need no database."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from workloads.placement.engine import PlacementPolicy, PlacementSpec, ProviderTraits, rank_offers


def offer(account="a1", name="RunPod", region="EU-RO-1", country="RO", price="2.00", spot=False,
          gpu="H100", count=1, volumes=("ephemeral", "persistent"), kind="runpod", monthly=None, setup="0"):
    return SimpleNamespace(provider_account_id=account, account_name=name, kind=kind, region=region,
                           country=country, price_usd_per_hour=Decimal(price), spot=spot, gpu_class=gpu,
                           gpu_count=count, supports_volumes=list(volumes), monthly_price=monthly,
                           setup_fee=Decimal(setup), available=3)


SPEC = PlacementSpec(gpu_classes=("H100",), gpu_count=1)
TOLERANT = PlacementSpec(gpu_classes=("H100",), gpu_count=1, interruption_tolerant=True)


def test_cheapest_wins_with_a_reason():
    r = rank_offers([offer(price="2.50", name="Lambda", account="a2", region="us-east-1", country="US"),
                     offer(price="2.10")], SPEC)
    assert r.chosen.offer.price_usd_per_hour == Decimal("2.10")
    assert "cheapest feasible offer" in r.chosen.reason and "RunPod EU-RO-1" in r.chosen.reason
    assert "+$0.40/h" in r.candidates[1].reason


def test_spot_dearer_than_on_demand_is_excluded_and_on_demand_preferred():
    od = offer(price="2.00")
    spot = offer(price="2.20", spot=True)  # same shape and place, spot costs more
    r = rank_offers([od, spot], TOLERANT)
    assert [c.offer for c in r.candidates] == [od]
    assert any("spot dearer than on-demand" in str(e) for e in r.exclusions)


def test_spot_equal_to_on_demand_is_not_assumed_cheaper():
    r = rank_offers([offer(price="2.00"), offer(price="2.00", spot=True)], TOLERANT)
    assert len(r.candidates) == 1 and not r.chosen.offer.spot


def test_cheaper_spot_wins_only_when_tolerated():
    od, spot = offer(price="2.00"), offer(price="0.90", spot=True)
    assert rank_offers([od, spot], TOLERANT).chosen.offer is spot
    strict = rank_offers([od, spot], SPEC)
    assert strict.chosen.offer is od
    assert any("spot not allowed" in str(e) for e in strict.exclusions)
    forced = rank_offers([od, spot], PlacementSpec(gpu_classes=("H100",), gpu_count=1, interruption_tolerant=True,
                                                   force_on_demand=True))
    assert forced.chosen.offer is od
    assert any("repeated interruptions" in str(e) for e in forced.exclusions)


def test_cap_exceeded_excludes_that_provider_only():
    capped = offer(account="a1", name="RunPod", price="1.50")
    other = offer(account="a2", name="Lambda", region="us-east-1", country="US", price="2.40")
    calls = []

    def gate(account_id, usd):
        calls.append((account_id, usd))
        return (False, 'over provider cap: "RunPod" has $500.00 spent of its $500.00 per month cap') \
            if account_id == "a1" else (True, "")

    r = rank_offers([capped, offer(account="a1", name="RunPod", region="EU-SE-1", price="1.90"), other], SPEC,
                    PlacementPolicy(spend_check=gate))
    assert [c.offer for c in r.candidates] == [other]
    cap = [e for e in r.exclusions if "over provider cap" in e.reason]
    assert cap and cap[0].where == "RunPod" and cap[0].count == 2
    # monotonic memo: asked at the dearest price, then the cheapest; never once per offer
    assert [c for c in calls if c[0] == "a1"] == [("a1", Decimal("1.90")), ("a1", Decimal("1.50"))]
    assert [c for c in calls if c[0] == "a2"] == [("a2", Decimal("2.40"))]


def test_blocklisted_region_is_skipped_with_reason():
    blocked = offer(region="EU-RO-1", price="1.50")
    fine = offer(region="EU-SE-1", country="SE", price="1.60")
    policy = PlacementPolicy(blocked={("a1", "EU-RO-1"): "no capacity, recently failed (until 05:00 UTC)"})
    r = rank_offers([blocked, fine], SPEC, policy)
    assert r.chosen.offer is fine
    assert any("blocklisted: no capacity" in str(e) and "EU-RO-1" in str(e) for e in r.exclusions)
    # an account-wide block (quota) takes out every region of the account
    r = rank_offers([blocked, fine], SPEC, PlacementPolicy(blocked={("a1", "*"): "quota exceeded"}))
    assert r.chosen is None


def test_tie_break_preference_then_launch_success():
    a = offer(account="a1", name="RunPod", price="2.001")
    b = offer(account="a2", name="Lambda", region="us-east-1", country="US", price="2.004")
    # same price to the cent: the preferred provider wins even if a fraction dearer
    r = rank_offers([a, b], SPEC, PlacementPolicy(preference={"a1": 50, "a2": 10}))
    assert r.chosen.offer is b and "preferred provider" in r.chosen.reason
    # same price and preference: the better launch record wins
    policy = PlacementPolicy(preference={"a1": 10, "a2": 10},
                             success={("a1", "EU-RO-1"): (2, 10), ("a2", "us-east-1"): (9, 10)})
    r = rank_offers([a, b], SPEC, policy)
    assert r.chosen.offer is b and "launch record" in r.chosen.reason


def test_volumes_a_provider_cannot_satisfy():
    no_vol = offer(account="a1", name="Vast", price="1.00", volumes=("ephemeral",))
    vol = offer(account="a2", name="RunPod", price="1.20")
    spec = PlacementSpec(gpu_classes=("H100",), gpu_count=1, volume_kinds=("persistent",))
    r = rank_offers([no_vol, vol], spec)
    assert r.chosen.offer is vol
    assert any("cannot provide persistent volumes" in str(e) for e in r.exclusions)


def test_monthly_billed_slow_delivery_kept_from_short_jobs_only():
    hetzner = offer(account="h", name="Hetzner", kind="hetzner", price="0.90", monthly="650", setup="79")
    cloud = offer(account="a2", name="Lambda", price="2.00")
    traits = {"hetzner": ProviderTraits("Hetzner", monthly_billed=True, slow_delivery=True)}
    job = PlacementSpec(gpu_classes=("H100",), gpu_count=1, lifecycle="job", max_duration_minutes=240)
    r = rank_offers([hetzner, cloud], job, PlacementPolicy(traits=traits))
    assert r.chosen.offer is cloud
    assert any("poor fit" in str(e) for e in r.exclusions)
    service = PlacementSpec(gpu_classes=("H100",), gpu_count=1, lifecycle="service")
    assert rank_offers([hetzner, cloud], service, PlacementPolicy(traits=traits)).chosen.offer is hetzner
    long_job = PlacementSpec(gpu_classes=("H100",), gpu_count=1, max_duration_minutes=60 * 24 * 30)
    assert rank_offers([hetzner, cloud], long_job, PlacementPolicy(traits=traits)).chosen.offer is hetzner


def test_move_avoids_current_place():
    here = offer(price="1.00")
    there = offer(account="a2", name="Lambda", region="us-east-1", country="US", price="2.00")
    spec = PlacementSpec(gpu_classes=("H100",), gpu_count=1, avoid=(("a1", "EU-RO-1"),))
    r = rank_offers([here, there], spec)
    assert r.chosen.offer is there


def test_private_image_leaves_out_providers_that_cannot_log_in_and_says_so():
    """Issue 13 §2.1: a provider without a registry login is excluded (and named) when the
    workload's image needs one; a public image may still go there."""
    from providers.adapters.registry import ADAPTERS, provider_info

    server = offer(account="h1", name="Hetzner Robot", kind="hetzner", price="1.00")
    cloud = offer(account="a1", name="RunPod", price="2.00")
    traits = {"hetzner": ProviderTraits("Hetzner", private_registry=False), "runpod": ProviderTraits("RunPod")}
    private = PlacementSpec(gpu_classes=("H100",), gpu_count=1, registry_host="nvcr.io")
    r = rank_offers([server, cloud], private, PlacementPolicy(traits=traits))
    assert r.chosen.offer is cloud
    assert "Hetzner Robot: cannot log in to the private registry nvcr.io to pull the image" in [str(e) for e in r.exclusions]
    assert rank_offers([server, cloud], SPEC, PlacementPolicy(traits=traits)).chosen.offer is server
    # the facts the policy reads: today every provider logs in (a new one must say so to get private images)
    assert [kind for kind in ADAPTERS if not provider_info(kind).private_registry] == []


def test_a_bidding_providers_spot_offer_is_ranked_and_compared_at_its_bid():
    """Issue 13 §2.7: Vast.ai/RunPod charge the bid, so spot is worth it only while floor +
    margin stays under the on-demand price, and it ranks at the bid, not at the floor."""
    traits = {"vast": ProviderTraits("Vast.ai", spot_bids=True), "lambda": ProviderTraits("Lambda")}
    od = offer(account="v1", name="Vast", kind="vast", price="0.35")
    spot = offer(account="v1", name="Vast", kind="vast", price="0.18", spot=True)
    policy = PlacementPolicy(traits=traits, default_bid_margin_pct=10)
    assert rank_offers([od, spot], TOLERANT, policy).chosen.offer is spot  # bid 0.198 < 0.35
    greedy = PlacementSpec(gpu_classes=("H100",), gpu_count=1, interruption_tolerant=True, bid_margin_pct=100)
    r = rank_offers([od, spot], greedy, policy)  # bid 0.36 ≥ 0.35: on-demand is cheaper
    assert r.chosen.offer is od
    assert any("spot bid dearer than on-demand (bid $0.36/h ≥ $0.35/h)" in str(e) for e in r.exclusions)
    # the account's margin applies when the workload sets none
    by_account = PlacementPolicy(traits=traits, bid_margins={"v1": 100})
    assert rank_offers([od, spot], TOLERANT, by_account).chosen.offer is od
    # ranked at the bid: a $0.19 on-demand elsewhere beats a $0.18 floor bid at +20 % ($0.216)
    other = offer(account="l1", name="Lambda", kind="lambda", price="0.19")
    margin20 = PlacementSpec(gpu_classes=("H100",), gpu_count=1, interruption_tolerant=True, bid_margin_pct=20)
    assert rank_offers([od, spot, other], margin20, policy).chosen.offer is other
