"""Placement: which offer a pod goes to and why (the pure engine), spot bids, moving a running
workload elsewhere, and the launch forms' live preview."""
