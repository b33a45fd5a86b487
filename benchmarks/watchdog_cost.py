"""What the RAM watchdog costs the child it watches: ``python -m lrf.benchmarks.watchdog_cost``.

Times the PyTorch eager teacher (the bench's baseline child, ``lrf.benchmarks.child`` kind
``torch``) three ways, back to back, ``--rounds`` times: run directly (no watchdog), under
``lrf.benchmarks.limit.run_child`` polling every POLL_S all along (the watchdog before this change),
and under ``run_child`` as it is now (every POLL_IDLE_S below half the limit). Prints the median
ms per image of each. A fair bench needs the last two to agree with the first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from lrf.cli import Parser, entry

PROG = "lrf.benchmarks.watchdog_cost"


def _direct(spec: dict) -> float:
    p = subprocess.run([sys.executable, "-m", "lrf.benchmarks.child", json.dumps(spec)],
                       capture_output=True, text=True)
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    for e in events:
        if e.get("event") == "result":
            return 1e3 * e["image_s"]["median"]
    errors = [e.get("message") for e in events if e.get("event") == "error"]
    raise ValueError(f"the benchmark child failed: {errors[-1] if errors else p.returncode}")


def _watched(spec: dict, limit_bytes: int, always_fast: bool) -> float:
    from lrf.benchmarks import limit

    idle = limit.POLL_IDLE_S
    if always_fast:
        limit.POLL_IDLE_S = limit.POLL_S  # the old watchdog: POLL_S for the whole run
    try:
        out = limit.run_child(spec, limit_bytes)
    finally:
        limit.POLL_IDLE_S = idle
    if out.status != "ok":
        raise ValueError(f"the benchmark child failed: {out.error}")
    return 1e3 * out.result["image_s"]["median"]


@entry(PROG)
def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="models/weights/cifar10")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ram-limit-gb", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or not args.ram_limit_gb > 0:
        p.error("--rounds and --steps must be >= 1 and --ram-limit-gb > 0")
    spec = {"kind": "torch", "checkpoint": args.checkpoint, "latent_size": 4,
            "steps": args.steps, "batch": 1, "repeats": 5, "warmup": 0, "min_seconds": 1.0,
            "flops": False}
    limit_bytes = int(args.ram_limit_gb * (1 << 30))
    for r in range(args.rounds):
        direct, old = _direct(spec), _watched(spec, limit_bytes, True)
        now = _watched(spec, limit_bytes, False)
        print(f"round {r + 1}: PyTorch eager, {args.steps} steps, ms per image: direct "
              f"{direct:.1f}, watchdog every 2 ms {old:.1f}, watchdog as now {now:.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
