"""The lifecycle of workloads and their pods: declare, provision with failover, follow, sync,
reconcile with the providers, terminate; supervision of declared lifecycles and scheduled runs."""
