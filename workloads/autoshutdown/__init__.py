"""Auto-shutdown: GPU telemetry (the in-pod agent's heartbeats, provider metrics), the idle policy
and the reaper that warns, stops and deletes idle pods."""
