#!/usr/bin/env bash
# Run the in-pod agent on a real GPU host against workloads/agent/local_heartbeat.py:
# idle and busy readings through NVML, the nvidia-smi fallback, and a forged token refused.
# Readings land in $OUT/readings.jsonl (OUT defaults to ./agent-check).
set -u
OUT=${OUT:-$PWD/agent-check}; mkdir -p "$OUT"
HERE="$(cd "$(dirname "$0")" && pwd)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 "$HERE/local_heartbeat.py" --port 8765 --token devtoken --out "$OUT/readings.jsonl" & SRV=$!
sleep 1
export AGENT_HEARTBEAT_URL=http://127.0.0.1:8765/agent/heartbeat/local/ AGENT_TOKEN=devtoken AGENT_INTERVAL=1
echo "== idle (NVML)"; python3 "$HERE/provisioner_agent.py" --once
python3 - <<'PY' & LOAD=$!
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
t = time.time()
while time.time() - t < 14:
    a @ b
    torch.cuda.synchronize()
PY
sleep 4
echo "== busy (NVML loop, 6 s)"; timeout -s TERM 6 python3 "$HERE/provisioner_agent.py"
echo "== busy (nvidia-smi fallback)"; mkdir -p /tmp/nonvml; echo 'raise ImportError("hidden to test the fallback")' > /tmp/nonvml/pynvml.py
PYTHONPATH=/tmp/nonvml python3 "$HERE/provisioner_agent.py" --once
wait $LOAD; sleep 2
echo "== idle again (NVML)"; python3 "$HERE/provisioner_agent.py" --once
echo "== forged token"; AGENT_TOKEN=forged python3 "$HERE/provisioner_agent.py" --once; echo "agent exit status with a forged token: $?"
kill $SRV
echo "== readings"; python3 - "$OUT/readings.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["source"], [(g["index"], g["util"], g["mem_used_mb"], g["mem_total_mb"]) for g in r["gpus"]], r["error"] or "")
PY
