"""Pods: the pod list (filters, sorting, pages) and the pod page, with their reads."""
