"""The invoice-case table: what each provider will charge, worked out by hand from the rule
that ``billing/rules.py`` cites for its kind (SRC), to the cent (half-up).

Conventions of the hand computations below:
* storage is $/GB-month over a 730-hour month, charged per second; the boot disk is the 50 GB the
  launch asks for (``LaunchRequest.disk_gb``), raised to the adapter's own minimum (AWS 30,
  GCP 50, Azure 64); "S x t/730" means S $/month for t hours;
* Hetzner is EUR, converted at the invoice rate EUR = 1.08 USD.

Each case: (id, kind, offer, volumes, start, steps, meter cadence, expected cents).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from providers.adapters.base import OfferData
from workloads.models import PodState

S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
R, STOP, TERM, INT = PodState.RUNNING, PodState.STOPPED, PodState.TERMINATED, PodState.INTERRUPTED
T0 = datetime(2026, 3, 10, 22, 15, tzinfo=UTC)  # a 2 h+ pod from here crosses midnight
EUR_RATE = Decimal("1.08")


def offer(price: str, *, spot: bool = False, currency: str = "USD", cls: str = "A100-80", **kw) -> OfferData:
    return OfferData(gpu_class=cls, gpu_count=1, region="r1", country="US", price_per_hour=Decimal(price),
                     currency=currency, spot=spot, instance_type="it", **kw)


def gex44() -> OfferData:  # Hetzner GEX44 (Robot stand-in product): EUR 0.2950/h, 184/month, 79 setup
    return offer("0.2950", currency="EUR", cls="RTX4000ADA", monthly_price=Decimal("184.00"),
                 setup_fee=Decimal("79.00"))


def vast(spot: bool = False) -> OfferData:  # dph_total 0.50 = GPU (dph_base) 0.45 + the host's default disk
    return offer("0.50", spot=spot, extra={"base_price_per_hour": 0.45, "storage_per_gb_month": 0.15})


def vol(gb: int) -> list[dict]:
    return [{"kind": "persistent", "size_gb": gb, "mount_path": "/data"}]


def run(seconds_or_delta, end=TERM) -> list:
    d = seconds_or_delta if isinstance(seconds_or_delta, timedelta) else seconds_or_delta * S
    return [(0 * S, R), (d, end)]


BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def elapsed(a: datetime, b: datetime) -> timedelta:
    """Real time between two wall-clock times (Python subtracts same-zone times on the wall clock)."""
    return b.astimezone(UTC) - a.astimezone(UTC)

CASES = [
    # --- AWS: per second, 60 s minimum (Linux); EBS gp3 $0.08/GB-month while the instance exists
    #     (root 50 GB: $4/month); EC2-interrupted spot free in the first instance-hour
    # GPU 60 s min: 3.06/60 = 0.051; EBS 4 x 3 s = 0.0000046 -> 0.0510 -> 5
    ("aws 3 s at $3.06/h: 60 s minimum", "aws", offer("3.06"), None, T0, run(3), 1 * S, 5),
    # 2.49 x 1801/3600 = 1.245692; EBS 4 x 1801/2628000 = 0.002741 -> 1.248433 -> 125
    ("aws 1801 s at $2.49/h: per second", "aws", offer("2.49"), None, T0, run(1801), 7 * M, 125),
    # 32.77 x 720 = 23594.40; EBS 4 x 720/730 = 3.945205 -> 23598.345205 -> 2359835
    ("aws 30 days at $32.77/h", "aws", offer("32.77"), None, datetime(2026, 4, 1, tzinfo=UTC), run(30 * D),
     6 * H, 2359835),
    # spot reclaimed by EC2 at 40 min: GPU free; EBS (50+500 GB) 44 x 2400/2628000 = 0.040183 -> 4
    ("aws spot interrupted early (40 min): instance free, EBS charged", "aws", offer("1.20", spot=True), vol(500),
     T0, run(40 * M, INT), 5 * M, 4),
    # reclaimed at 90 min: charged to the second 1.20 x 1.5 = 1.80; EBS 4 x 5400/2628000 = 0.008219 -> 181
    ("aws spot interrupted late (90 min): charged to the second", "aws", offer("1.20", spot=True), None, T0,
     run(90 * M, INT), 7 * M, 181),
    # reclaimed at exactly 3600 s: no longer inside the first hour: 1.20 + EBS 4/730 = 0.005479 -> 121
    ("aws spot interrupted at 3600 s: charged", "aws", offer("1.20", spot=True), None, T0, run(3600, INT), 10 * M,
     121),
    # the user ends a spot instance at 40 min: charged, 1.20 x 2/3 = 0.80 + EBS 4 x 2400/2628000 = 0.003653 -> 80
    ("aws spot terminated by the user at 40 min: charged", "aws", offer("1.20", spot=True), None, T0, run(40 * M),
     5 * M, 80),
    # run 1 h, stopped 10 h, run 30 min: GPU 2 x 1.5 = 3.00; EBS all 11.5 h: 4 x 11.5/730 = 0.063014 -> 306
    ("aws stop and restart: both sessions billed, EBS throughout", "aws", offer("2.00"), None, T0,
     [(0 * S, R), (1 * H, STOP), (11 * H, R), (11 * H + 30 * M, TERM)], 20 * M, 306),
    # two 10 s sessions: the 60 s minimum per start -> 120 s at 3.60 = 0.12; EBS 80 s -> 0.000122 -> 12
    ("aws two 10 s sessions: minimum per start", "aws", offer("3.60"), None, T0,
     [(0 * S, R), (10 * S, STOP), (70 * S, R), (80 * S, TERM)], 5 * S, 12),
    # 1 h running at 0.526 then stopped 720 h with 1000 GB: EBS 1050 GB = 84/month x 721/730 = 82.964384
    # -> 0.526 + 82.964384 = 83.490384 -> 8349
    ("aws stopped 30 days, EBS 1 TB while stopped", "aws", offer("0.526"), vol(1000),
     datetime(2026, 5, 1, tzinfo=UTC), [(0 * S, R), (1 * H, STOP), (721 * H, TERM)], 12 * H, 8349),
    # US DST starts 2026-03-08 02:00 EST: 01:30 EST -> 03:30 EDT is 1 h: 2.00 + EBS 4/730 = 0.005479 -> 201
    ("aws across the US DST change: 2 h on the wall clock, 1 h billed", "aws", offer("2.00"), None,
     datetime(2026, 3, 8, 1, 30, tzinfo=NEW_YORK),
     [(0 * S, R), (elapsed(datetime(2026, 3, 8, 1, 30, tzinfo=NEW_YORK), datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK)),
                   TERM)],
     10 * M, 201),

    # --- GCP: per second after a 1-minute minimum; balanced PD $0.10/GB-month while the disk
    #     exists (boot 50 GB: $5/month)
    # 2.93/60 = 0.048833; PD 5 x 3/2628000 = 0.000006 -> 5
    ("gcp 3 s at $2.93/h: 1 minute minimum", "gcp", offer("2.93"), None, T0, run(3), 1 * S, 5),
    # 11.06 x 720 = 7963.20; PD 5 x 720/730 = 4.931507 -> 7968.131507 -> 796813
    ("gcp 30 days at $11.06/h", "gcp", offer("11.06"), None, datetime(2026, 6, 1, tzinfo=UTC), run(30 * D), 6 * H,
     796813),
    # preempted at 30 s: the minimum applies as to any VM: 8.00/60 = 0.133333; PD 5 x 30/2628000 = 0.000057 -> 13
    ("gcp spot preempted early (30 s): 1 minute minimum", "gcp", offer("8.00", spot=True), None, T0,
     run(30, INT), 5 * S, 13),
    # preempted at 2 h 10 min: 1.10 x 7800/3600 = 2.383333; PD 5 x 7800/2628000 = 0.014840 -> 2.398174 -> 240
    ("gcp spot preempted late (2 h 10 min): per second", "gcp", offer("1.10", spot=True), None, T0,
     run(130 * M, INT), 10 * M, 240),
    # run 2 h at 2.00 = 4.00; 250 GB PD = 25/month: running 25 x 2/730 = 0.068493, stopped 48 h 25 x 48/730
    # = 1.643836 -> 5.712329 -> 571
    ("gcp stopped 48 h with 200 GB persistent disk", "gcp", offer("2.00"), vol(200), T0,
     [(0 * S, R), (2 * H, STOP), (50 * H, TERM)], 30 * M, 571),
    # 10:59:30 -> 11:00:31 (61 s across the hour): 14.40 x 61/3600 = 0.244; PD 5 x 61/2628000 = 0.000116 -> 24
    ("gcp 61 s across the hour", "gcp", offer("14.40"), None, datetime(2026, 3, 11, 10, 59, 30, tzinfo=UTC),
     run(61), 10 * S, 24),
    # EU DST ends 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 CEST -> 02:30 CET is 1 h on an unchanged wall
    # clock: 3.00 + PD 5/730 = 0.006849 -> 301
    ("gcp across the EU DST end: same wall clock, 1 h billed", "gcp", offer("3.00"), None,
     datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN),
     run(elapsed(datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN), datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN))),
     10 * M, 301),

    # --- Azure: whole minutes, rounded down (6 min 45 s bills 6 min), no minimum; managed OS disk
    #     64 GB x $0.10 = $6.40/month while the VM exists, deallocated included
    # 6 min: 3.40 x 6/60 = 0.34; disk 6.40 x 405/2628000 = 0.000986 -> 34
    ("azure 6 min 45 s bills 6 min (the FAQ's example)", "azure", offer("3.40"), None, T0, run(405), 1 * M, 34),
    # 3 s: 0 whole minutes; disk 6.40 x 3/2628000 = 0.000007 -> 0
    ("azure 3 s: no whole minute, nothing billed", "azure", offer("3.40"), None, T0, run(3), 1 * S, 0),
    # 27.20 x 720 = 19584.00; disk 6.40 x 720/730 = 6.312329 -> 19590.312329 -> 1959031
    ("azure 30 days at $27.20/h", "azure", offer("27.20"), None, datetime(2026, 7, 1, tzinfo=UTC), run(30 * D),
     6 * H, 1959031),
    # 1 h 0 min 59 s -> 60 min: 3.40; disks 192 GB = 19.20/month: running 19.20 x 3659/2628000 = 0.026733,
    # deallocated 100 h 19.20 x 100/730 = 2.630137 -> 6.056870 -> 606
    ("azure deallocated 100 h: disks still billed", "azure", offer("3.40"), vol(128), T0,
     [(0 * S, R), (3659 * S, STOP), (3659 * S + 100 * H, TERM)], 1 * H, 606),
    # evicted at 2 min 59 s: 2 whole minutes 0.50 x 2/60 = 0.016667; disk 6.40 x 179/2628000 = 0.000436 -> 2
    ("azure spot evicted at 2 min 59 s", "azure", offer("0.50", spot=True), None, T0, run(179, INT), 30 * S, 2),
    # two sessions of 2 min 30 s, 10 min apart: 2 + 2 whole minutes at 6.00 = 0.40 (one 5-min session would be
    # 0.50); disk over the 15 min 6.40 x 900/2628000 = 0.002192 -> 40
    ("azure stop and restart: minutes rounded down per session", "azure", offer("6.00"), None, T0,
     [(0 * S, R), (150 * S, STOP), (750 * S, R), (900 * S, TERM)], 30 * S, 40),

    # --- Lambda: one-minute increments from launch to terminate, nothing else
    # 1 min: 1.29/60 = 0.0215 -> 2
    ("lambda 3 s at $1.29/h: one minute", "lambda", offer("1.29"), None, T0, run(3), 1 * S, 2),
    # 61 s -> 2 min: 6.00 x 2/60 = 0.20 -> 20
    ("lambda 61 s: two minutes", "lambda", offer("6.00"), None, T0, run(61), 10 * S, 20),
    # 23.92 x 720 = 17222.40 -> 1722240
    ("lambda 30 days at $23.92/h", "lambda", offer("23.92"), None, datetime(2026, 8, 1, tzinfo=UTC), run(30 * D),
     6 * H, 1722240),
    # 22:15 -> 01:44:30 next day (3 h 29 min 30 s) -> 3 h 30 min: 2.49 x 3.5 = 8.715 -> 872
    ("lambda across midnight: 3 h 29 min 30 s -> 3 h 30 min", "lambda", offer("2.49"), None, T0,
     run(3 * H + 29 * M + 30 * S), 7 * M, 872),
    # 5 min at 1.50 = 0.125 exactly: half-up to the cent -> 13 (half-even would show 0.12)
    ("lambda 5 min at $1.50/h = $0.125: half-up", "lambda", offer("1.50"), None, T0, run(5 * M), 1 * M, 13),

    # --- RunPod: per second; running: container (50 GB) + volume at $0.10/GB-month; stopped: volume at
    #     $0.20/GB-month
    # 2.49 x 3/3600 = 0.002075; container 5 x 3/2628000 = 0.000006 -> 0
    ("runpod 3 s at $2.49/h", "runpod", offer("2.49"), None, T0, run(3), 1 * S, 0),
    # 2.69 x 720 = 1936.80; 150 GB running 15 x 720/730 = 14.794521 -> 1951.594521 -> 195159
    ("runpod 30 days at $2.69/h with a 100 GB volume", "runpod", offer("2.69"), vol(100),
     datetime(2026, 9, 1, tzinfo=UTC), run(30 * D), 6 * H, 195159),
    # run 2 h at 0.79 = 1.58; running 150 GB 15 x 2/730 = 0.041096; stopped 72 h volume 100 GB x 0.20 = 20 x
    # 72/730 = 1.972603 -> 3.593699 -> 359
    ("runpod stopped 72 h: volume at the stopped rate", "runpod", offer("0.79"), vol(100), T0,
     [(0 * S, R), (2 * H, STOP), (74 * H, TERM)], 1 * H, 359),
    # run 1 h, stopped 5 h, run 1 h at 2.00 = 4.00; running 70 GB 7 x 2/730 = 0.019178; stopped 20 GB 4 x 5/730 =
    # 0.027397 -> 4.046575 -> 405
    ("runpod stop and restart", "runpod", offer("2.00"), vol(20), T0,
     [(0 * S, R), (1 * H, STOP), (6 * H, R), (7 * H, TERM)], 15 * M, 405),
    # spot by bid: floor 1.00 + 10 % margin (SPOT_BID_MARGIN_PCT) = bid 1.10 is charged; interrupted at 45 min:
    # 1.10 x 0.75 = 0.825; container 5 x 0.75/730 = 0.005137 -> 0.830137 -> 83
    ("runpod spot interrupted at 45 min: the bid is charged", "runpod", offer("1.00", spot=True), None, T0,
     run(45 * M, INT), 5 * M, 83),
    # 2026-03-31 23:30 -> 04-01 00:30: 3.00; container 5/730 = 0.006849 -> 301
    ("runpod across the month end", "runpod", offer("3.00"), None, datetime(2026, 3, 31, 23, 30, tzinfo=UTC),
     run(1 * H), 10 * M, 301),

    # --- Vast.ai: GPU (dph_base 0.45) per active second; the host's storage price 0.15 $/GB-month on the
    #     50 GB disk (7.50/month) every second the instance exists
    # 0.45 x 3/3600 = 0.000375; 7.5 x 3/2628000 = 0.000009 -> 0
    ("vast 3 s", "vast", vast(), None, T0, run(3), 1 * S, 0),
    # 0.45 x 720 = 324.00; 7.5 x 720/730 = 7.397260 -> 331.397260 -> 33140
    ("vast 30 days", "vast", vast(), None, datetime(2026, 10, 1, tzinfo=UTC), run(30 * D), 6 * H, 33140),
    # 10 h GPU 4.50; storage 110 h 7.5 x 110/730 = 1.130137 -> 5.630137 -> 563
    ("vast stopped 100 h: storage only", "vast", vast(), None, T0,
     [(0 * S, R), (10 * H, STOP), (110 * H, TERM)], 1 * H, 563),
    # interruptible: the GPU is charged at the bid, floor 0.50 + 10 % = 0.55; reclaimed at 20 min: 0.55/3 =
    # 0.183333; storage 7.5 x (1/3)/730 = 0.003425 -> 0.186758 -> 19
    ("vast interruptible reclaimed at 20 min: the bid is charged", "vast", vast(spot=True), None, T0,
     run(20 * M, INT), 5 * M, 19),
    # an offer without the split prices: its total rate while running only, 2 h x 0.50 -> 100
    ("vast offer without storage price: total rate while running", "vast", offer("0.50"), None, T0, run(2 * H),
     15 * M, 100),
    # run 2 h, stopped 3 h, run 1 h: GPU 3 h x 0.45 = 1.35; storage 6 h 7.5 x 6/730 = 0.061644 -> 141
    ("vast stop and restart", "vast", vast(), None, T0, [(0 * S, R), (2 * H, STOP), (5 * H, R), (6 * H, TERM)],
     20 * M, 141),

    # --- CoreWeave: per minute (started minute owed), no minimum
    # 1 min: 4.76/60 = 0.079333 -> 8
    ("coreweave 3 s: one minute", "coreweave", offer("4.76"), None, T0, run(3), 1 * S, 8),
    # 2 min x 6.00/60 = 0.20 -> 20
    ("coreweave 61 s: two minutes", "coreweave", offer("6.00"), None, T0, run(61), 10 * S, 20),
    # 49.24 x 720 = 35452.80 -> 3545280
    ("coreweave 30 days at $49.24/h", "coreweave", offer("49.24"), None, datetime(2026, 11, 1, tzinfo=UTC),
     run(30 * D), 6 * H, 3545280),
    # 59 min 1 s -> 60 min = 2.21 -> 221
    ("coreweave 59 min 1 s -> 1 h", "coreweave", offer("2.21"), None, T0, run(59 * M + 1 * S), 5 * M, 221),
    # 3 min at 2.10 = 0.105 exactly: half-up -> 11
    ("coreweave 3 min at $2.10/h = $0.105: half-up", "coreweave", offer("2.10"), None, T0, run(3 * M), 1 * M, 11),

    # --- Hetzner Robot: per started hour at EUR 0.2950, never more than EUR 184 in a calendar month,
    #     setup EUR 79 once, cancelled immediately; EUR -> USD at 1.08
    # 1 h 0.295 + 79 = 79.295 EUR x 1.08 = 85.6386 -> 8564
    ("hetzner 3 s: one hour + setup fee (EUR)", "hetzner", gex44(), None, T0, run(3), 1 * S, 8564),
    # 11 h x 0.295 = 3.245 + 79 = 82.245 x 1.08 = 88.8246 -> 8882
    ("hetzner 10 h 30 min: 11 hours + setup", "hetzner", gex44(), None, T0, run(10 * H + 30 * M), 30 * M, 8882),
    # 1 h 0 min 1 s -> 2 h: 0.59 + 79 = 79.59 x 1.08 = 85.9572 -> 8596
    ("hetzner 1 h 0 min 1 s: two hours", "hetzner", gex44(), None, T0, run(3601), 10 * M, 8596),
    # 2026-03-01 -> 03-31: 720 h x 0.295 = 212.40 > 184: capped 184 + 79 = 263 x 1.08 = 284.04 -> 28404
    ("hetzner 30 days in March: monthly cap reached", "hetzner", gex44(), None, datetime(2026, 3, 1, tzinfo=UTC),
     run(30 * D), 12 * H, 28404),
    # 03-20 12:00 -> 04-12 12:00: March 276 h = 81.42, April 276 h = 81.42 (no cap) + 79 = 241.84 x 1.08 =
    # 261.1872 -> 26119
    ("hetzner across the month end, under the cap", "hetzner", gex44(), None, datetime(2026, 3, 20, 12, tzinfo=UTC),
     run(23 * D), 12 * H, 26119),
    # 03-01 -> 04-30: March 744 h (219.48) capped 184, April 696 h (205.32) capped 184 + 79 = 447 x 1.08 =
    # 482.76 -> 48276
    ("hetzner two months, cap reached in each", "hetzner", gex44(), None, datetime(2026, 3, 1, tzinfo=UTC),
     run(60 * D), 12 * H, 48276),
    # EU DST starts 2026-03-29 02:00 CET: 01:00 CET -> 05:00 CEST is 3 h: 0.885 + 79 = 79.885 x 1.08 =
    # 86.2758 -> 8628
    ("hetzner across the EU DST start: 4 h on the wall clock, 3 h billed", "hetzner", gex44(), None,
     datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN),
     [(0 * S, R), (elapsed(datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN), datetime(2026, 3, 29, 5, 0, tzinfo=BERLIN)),
                   TERM)],
     30 * M, 8628),
    # a market server: EUR 0.0625/h, 39/month, no setup fee; 7 days = 168 h = 10.50 x 1.08 = 11.34 -> 1134
    ("hetzner market server, no setup fee, 7 days", "hetzner",
     offer("0.0625", currency="EUR", cls="RTX4000ADA", monthly_price=Decimal("39.00")), None, T0, run(7 * D), 6 * H,
     1134),

    # --- Kubernetes (own cluster, internal price per second)
    # 1.50 x 720 = 1080.00 -> 108000
    ("kubernetes 30 days at $1.50/h", "kubernetes", offer("1.50"), None, datetime(2026, 12, 1, tzinfo=UTC),
     run(30 * D), 6 * H, 108000),
    # 7201 s at 3.60 = 7.201 -> 720
    ("kubernetes 2 h 1 s across midnight", "kubernetes", offer("3.60"), None, T0, run(7201), 10 * M, 720),
]
