"""What an admin must have in place at each provider before connecting it: the key or role, and the
quota a new account lacks. Shown up front on the wizard's credentials step (Lambda's launch wizard
states its SSH-key and quota prerequisites before the first click; a new cloud account's GPU quota is
usually zero, and the first launch fails on it otherwise).

Each entry names the provider document it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prerequisite:
    text: str
    source: str  # the provider's document (title, section) the fact comes from


PREREQUISITES: dict[str, tuple[Prerequisite, ...]] = {
    "sandbox": (),
    "runpod": (
        Prerequisite("An API key with Read/Write permission (Settings → API Keys); a read-only key can list "
                     "capacity but not launch.", "RunPod docs, 'Manage API keys' (permissions)"),
        Prerequisite("Credit on the account: RunPod stops pods when the balance runs out.",
                     "RunPod docs, 'Billing information' (balance and auto-pay)"),
    ),
    "lambda": (
        Prerequisite("An API key (Lambda Cloud dashboard → API keys).", "Lambda Cloud API, 'Authentication'"),
        Prerequisite("An SSH key already added in the dashboard: every launch names one (ssh_key_names is "
                     "required).", "Lambda Cloud API spec, launch request (ssh_key_names required)"),
    ),
    "vast": (
        Prerequisite("An API key (Account → Keys) and a positive credit balance: instances stop at $0.",
                     "Vast.ai docs, 'API keys' and 'Billing' (credit balance)"),
    ),
    "hetzner": (
        Prerequisite("A Robot webservice user — created in Robot under Settings → Webservice and app settings; it "
                     "is not your Hetzner account login.", "Hetzner Robot webservice docs, 'Authentication'"),
        Prerequisite("An SSH key stored in Robot (its fingerprint) and its private key here: servers are "
                     "installed with it and the workload is started over SSH.", "Hetzner Robot webservice docs, "
                     "'Key' and 'Boot: Linux' (authorized_key)"),
        Prerequisite("Robot locks the caller's IP for 10 minutes after 3 failed logins: a failed check is "
                     "never retried automatically.", "Hetzner Robot webservice docs, 'Authentication' (IP lock)"),
    ),
    "aws": (
        Prerequisite("An IAM user or role key allowed ec2:RunInstances (with tags on create), StopInstances, "
                     "StartInstances, TerminateInstances and the ec2:Describe* calls (instances, instance status, "
                     "types, type offerings, images, regions, security groups, spot price history); optionally "
                     "pricing:GetProducts, cloudwatch:GetMetricData and ce:GetCostAndUsage (reconciliation).",
                     "Amazon EC2 API Reference, 'Actions'; Service Authorization Reference, 'Actions defined by "
                     "Amazon EC2'"),
        Prerequisite("GPU vCPU quota in each region you allow: new accounts often have 0 for 'Running On-Demand "
                     "G and VT instances' / 'Running On-Demand P instances' and the Spot equivalents; request "
                     "an increase in Service Quotas first.", "Amazon EC2 User Guide, 'Amazon EC2 service quotas' "
                     "(vCPU-based On-Demand and Spot limits)"),
    ),
    "gcp": (
        Prerequisite("A service account with the Compute Instance Admin (v1) role in the project, and its JSON "
                     "key.", "Compute Engine docs, 'Access control: IAM roles' (roles/compute.instanceAdmin.v1)"),
        Prerequisite("GPU quota: 'GPUs (all regions)' (GPUS_ALL_REGIONS) plus the per-region quota of each GPU "
                     "model (and the PREEMPTIBLE_ one for spot) — 0 on a new project until raised.",
                     "Compute Engine docs, 'GPU quota' (Allocation quotas)"),
    ),
    "azure": (
        Prerequisite("An app registration (client ID and secret) with a role that can create VMs and network "
                     "interfaces in the resource group (e.g. Virtual Machine Contributor + Network Contributor).",
                     "Azure RBAC docs, 'Azure built-in roles' (Compute, Networking)"),
        Prerequisite("vCPU quota for each GPU VM family in each region (e.g. 'Standard NCASv3_T4 Family vCPUs'), "
                     "and 'Total Regional Spot vCPUs' for spot — 0 on many subscriptions until requested.",
                     "Azure docs, 'Azure subscription and service limits, quotas' (vCPU quotas; Spot vCPU quota)"),
        Prerequisite("An existing virtual network subnet for the VMs' network interfaces.",
                     "Azure docs, 'Create, change, or delete a network interface'"),
    ),
    "kubernetes": (
        Prerequisite("A kubeconfig whose user may create, list and delete Pods, Services, Secrets and "
                     "PersistentVolumeClaims in the namespace.", "Kubernetes docs, 'Using RBAC Authorization'"),
        Prerequisite("GPU nodes advertising nvidia.com/gpu (the NVIDIA device plugin or GPU Operator); "
                     "utilization needs the DCGM exporter scraped by the Prometheus you name.",
                     "Kubernetes docs, 'Schedule GPUs'; NVIDIA DCGM Exporter docs"),
    ),
    "coreweave": (
        Prerequisite("A CoreWeave Kubernetes Service (CKS) kubeconfig with an access token for your "
                     "namespace.", "CoreWeave docs, 'Manage API access tokens' / 'Get a kubeconfig'"),
        Prerequisite("GPU node pools in the cluster (CoreWeave NodePool resources) with capacity for the "
                     "classes you launch.", "CoreWeave docs, 'Node Pools'"),
    ),
}


def prerequisites_for(kind: str) -> tuple[Prerequisite, ...]:
    return PREREQUISITES.get(kind, ())
