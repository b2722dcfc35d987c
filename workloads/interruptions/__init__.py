"""Spot interruptions: the notices providers give before taking a pod back, acting on them
(a replacement placed first), and the fast sync of spot pods."""
