"""Canonical GPU classes, provider GPU-name normalization and region -> country mapping.

One table each, so that placement compares like with like across providers.
"""

from __future__ import annotations

import re

from provisioner.inputs import split_list

# canonical class -> (label, VRAM GB per GPU, rough tier for sorting)
GPU_CLASSES: dict[str, tuple[str, int]] = {
    "T4": ("NVIDIA T4 16 GB", 16),
    "L4": ("NVIDIA L4 24 GB", 24),
    "A10": ("NVIDIA A10 / A10G 24 GB", 24),
    "RTX4090": ("NVIDIA RTX 4090 24 GB", 24),
    "A40": ("NVIDIA A40 48 GB", 48),
    "L40S": ("NVIDIA L40S 48 GB", 48),
    "RTX6000ADA": ("NVIDIA RTX 6000 Ada 48 GB", 48),
    "RTX4000ADA": ("NVIDIA RTX 4000 SFF Ada 20 GB", 20),
    "A100-40": ("NVIDIA A100 40 GB", 40),
    "A100-80": ("NVIDIA A100 80 GB", 80),
    "H100": ("NVIDIA H100 80 GB", 80),
    "H200": ("NVIDIA H200 141 GB", 141),
    "B200": ("NVIDIA B200 180 GB", 180),
    "MI300X": ("AMD Instinct MI300X 192 GB", 192),
    "V100": ("NVIDIA V100 16/32 GB", 32),
}

GPU_CLASS_CHOICES = [(k, v[0]) for k, v in GPU_CLASSES.items()]

# The user-facing families of the brief ("A100", "MI300") expand to canonical classes.
GPU_FAMILIES: dict[str, tuple[str, ...]] = {
    "A100": ("A100-40", "A100-80"),
    "MI300": ("MI300X",),
}

# Ordered: first match wins. Patterns run on a lower-cased, space-normalized name.
_GPU_NAME_PATTERNS: list[tuple[str, str]] = [
    (r"(?<!g)h200", "H200"),  # not GH200 (Grace Hopper = an H100-class GPU)
    (r"b200", "B200"),
    (r"h100", "H100"),
    (r"gh200", "H100"),
    (r"a100.*(80|sxm4-80|pcie-80)", "A100-80"),
    (r"a100", "A100-40"),
    (r"mi300", "MI300X"),
    (r"l40s", "L40S"),
    (r"rtx ?6000 ?ada|6000 ada", "RTX6000ADA"),
    (r"rtx ?4000 ?(sff )?ada|4000 sff ada", "RTX4000ADA"),
    (r"a40\b|a40$", "A40"),
    (r"a10g?\b|a10g?$", "A10"),
    (r"rtx ?4090|4090", "RTX4090"),
    (r"\bl4\b|nvidia-l4|^l4$", "L4"),
    (r"\bt4\b|tesla-t4|^t4$", "T4"),
    (r"v100", "V100"),
]


def canonical_gpu_class(provider_name: str, memory_gb: int | float | None = None) -> str | None:
    """Map a provider's GPU name ("NVIDIA A100-SXM4-80GB", "gpu_1x_a10", "nvidia-tesla-t4")
    to a canonical class, or None when unknown. ``memory_gb`` disambiguates A100 40/80."""
    name = re.sub(r"[_\s]+", " ", provider_name.lower()).strip()
    for pattern, cls in _GPU_NAME_PATTERNS:
        if re.search(pattern, name):
            if cls == "A100-40" and memory_gb and memory_gb >= 70:
                return "A100-80"
            return cls
    return None


def expand_gpu_classes(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Expand families ("A100") to canonical classes, keeping order and dropping duplicates."""
    out: list[str] = []
    for c in classes:
        for x in GPU_FAMILIES.get(c, (c,)):
            if x not in out:
                out.append(x)
    return out


# --- countries ----------------------------------------------------------------------------

# Residency presets are legal areas, so "EU" is exactly the 27 member states and "EEA" adds the three
# EEA/EFTA states. Source: the EEA Agreement summary ("The European Economic Area (EEA) joins together
# the 27 Member States of the European Union (EU) and the three EEA/EFTA States (Liechtenstein, Iceland,
# and Norway)"); GDPR summary, "European Economic Area": "the 27 member states of the EU and 3 of the four
# EFTA states ... Iceland, Liechtenstein and Norway" (Switzerland is not in the EEA).
EU_MEMBER_STATES = (
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE"
).split()
EEA_EFTA_STATES = ("IS", "LI", "NO")
EU_EEA = EU_MEMBER_STATES + list(EEA_EFTA_STATES)

COUNTRY_PRESETS: dict[str, tuple[str, ...]] = {
    "EU": tuple(EU_MEMBER_STATES),
    "EEA": tuple(EU_EEA),
    "US": ("US",),
    "NA": ("US", "CA"),
    "UK": ("GB",),
}


ISO_COUNTRY = re.compile(r"[A-Z]{2}")


def country_codes(text: str | None) -> list[str]:
    """Typed countries and presets ("DE; fr", "EU CH") as upper-cased codes, presets kept as typed
    (a pin's label shows them); not validated — lenient readers such as the live preview use this."""
    return [c.upper() for c in split_list(text)]


def parse_country_pin(text: str | None) -> list[str]:
    """``country_codes``, refusing (ValueError) what is neither an ISO 3166-1 alpha-2 code nor a preset."""
    codes = country_codes(text)
    bad = [c for c in expand_countries(codes) if not ISO_COUNTRY.fullmatch(c)]
    if bad:
        raise ValueError(f"Not ISO country codes or presets: {', '.join(bad)}")
    return codes


def expand_countries(codes: list[str] | tuple[str, ...]) -> list[str]:
    """Expand presets (EU, US, ...) into ISO codes; plain codes pass through upper-cased."""
    out: list[str] = []
    for c in codes:
        c = c.strip().upper()
        if not c:
            continue
        for x in COUNTRY_PRESETS.get(c, (c,)):
            if x not in out:
                out.append(x)
    return out


# region id (lower-cased) -> ISO country. Covers the regions of every provider we ship.
REGION_COUNTRIES: dict[str, str] = {
    # AWS
    "us-east-1": "US", "us-east-2": "US", "us-west-1": "US", "us-west-2": "US",
    "ca-central-1": "CA", "ca-west-1": "CA", "sa-east-1": "BR",
    "eu-central-1": "DE", "eu-central-2": "CH", "eu-west-1": "IE", "eu-west-2": "GB",
    "eu-west-3": "FR", "eu-north-1": "SE", "eu-south-1": "IT", "eu-south-2": "ES",
    "ap-northeast-1": "JP", "ap-northeast-2": "KR", "ap-northeast-3": "JP",
    "ap-southeast-1": "SG", "ap-southeast-2": "AU", "ap-south-1": "IN", "me-central-1": "AE",
    "il-central-1": "IL", "af-south-1": "ZA",
    "ap-east-1": "HK", "ap-south-2": "IN", "ap-southeast-3": "ID", "ap-southeast-4": "AU", "ap-southeast-5": "MY",
    "me-south-1": "BH", "mx-central-1": "MX",
    # GCP
    "us-central1": "US", "us-east1": "US", "us-east4": "US", "us-east5": "US", "us-west1": "US",
    "us-west2": "US", "us-west3": "US", "us-west4": "US", "us-south1": "US",
    "europe-west1": "BE", "europe-west2": "GB", "europe-west3": "DE", "europe-west4": "NL",
    "europe-west6": "CH", "europe-west8": "IT", "europe-west9": "FR", "europe-north1": "FI",
    "europe-central2": "PL", "europe-southwest1": "ES", "asia-east1": "TW", "asia-northeast1": "JP",
    "asia-northeast3": "KR", "asia-southeast1": "SG", "asia-south1": "IN",
    "australia-southeast1": "AU", "northamerica-northeast1": "CA", "southamerica-east1": "BR",
    "me-west1": "IL",
    "asia-east2": "HK", "asia-northeast2": "JP", "asia-south2": "IN", "asia-southeast2": "ID",
    "australia-southeast2": "AU", "europe-west10": "DE", "europe-west12": "IT", "europe-north2": "SE",
    "northamerica-northeast2": "CA", "southamerica-west1": "CL", "me-central1": "QA", "me-central2": "SA",
    "africa-south1": "ZA", "us-east7": "US",
    # Azure
    "eastus": "US", "eastus2": "US", "westus": "US", "westus2": "US", "westus3": "US",
    "centralus": "US", "southcentralus": "US", "northcentralus": "US", "westeurope": "NL",
    "northeurope": "IE", "francecentral": "FR", "germanywestcentral": "DE", "swedencentral": "SE",
    "switzerlandnorth": "CH", "norwayeast": "NO", "polandcentral": "PL", "italynorth": "IT",
    "uksouth": "GB", "ukwest": "GB", "canadacentral": "CA", "japaneast": "JP",
    "australiaeast": "AU", "koreacentral": "KR", "southeastasia": "SG", "centralindia": "IN",
    "brazilsouth": "BR", "uaenorth": "AE",
    "westcentralus": "US", "canadaeast": "CA", "japanwest": "JP", "australiasoutheast": "AU", "southindia": "IN",
    "eastasia": "HK", "southafricanorth": "ZA", "spaincentral": "ES", "mexicocentral": "MX", "qatarcentral": "QA",
    # Lambda
    "us-south-1": "US", "us-south-2": "US", "us-south-3": "US", "us-midwest-1": "US",
    "us-east-3": "US", "europe-central-1": "DE", "asia-south-1": "IN", "asia-northeast-1": "JP",
    "asia-northeast-2": "KR", "me-west-1": "IL", "australia-east-1": "AU",
    # Hetzner
    "fsn1": "DE", "nbg1": "DE", "hel1": "FI", "ash": "US", "hil": "US", "sin": "SG",
    "fsn1-dc14": "DE", "fsn1-dc18": "DE", "nbg1-dc3": "DE", "hel1-dc2": "FI",
    # CoreWeave
    "us-east-04": "US", "us-west-04": "US", "us-central-01": "US", "lga1": "US", "las1": "US",
    "ord1": "US", "rno2": "US", "gb-south-01": "GB",
    "us-east-01": "US", "us-east-02": "US", "us-east-03": "US", "us-east-06": "US", "us-east-08": "US",
    "us-west-01": "US", "us-west-09": "US", "us-central-02": "US", "us-lab-01": "US", "eu-south-04": "ES", "se-north-01": "SE",
    # Sandbox
    "sbx-us-east": "US", "sbx-us-west": "US", "sbx-ca-central": "CA", "sbx-de-fra": "DE",
    "sbx-nl-ams": "NL", "sbx-fi-hel": "FI", "sbx-jp-tyo": "JP",
}

# RunPod data centres are "<CC>-<CITY>-<n>" (EU-RO-1, US-TX-3, CA-MTL-1, EUR-IS-1, EU-SE-1, ...)
_RUNPOD_DC = re.compile(r"^(?P<a>[A-Z]{2,3})-(?P<b>[A-Z]{2,3})-\d+$")


def region_country(region: str, default: str = "") -> str:
    """ISO country of a provider region id, or ``default`` when unknown."""
    key = region.strip().lower()
    if key in REGION_COUNTRIES:
        return REGION_COUNTRIES[key]
    m = _RUNPOD_DC.match(region.strip().upper())
    if m:
        a, b = m.group("a"), m.group("b")
        if a in ("EU", "EUR", "AP", "OC", "SEA"):
            return {"IS": "IS", "RO": "RO", "SE": "SE", "NL": "NL", "CZ": "CZ", "NO": "NO",
                    "FR": "FR", "DE": "DE", "FI": "FI"}.get(b, b if len(b) == 2 else default)
        return a if len(a) == 2 else default
    return default
