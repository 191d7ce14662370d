"""What this machine's cores give two busy Python processes, with no Loom involved.

    .venv/bin/python -m bench.cores

`--workers 2` can only scale as far as the machine lets two processes run at once. On a
virtual machine two vCPUs may share one physical core (hyper-threads) or a busy host, and
then two processes each run slower than one alone. This runs the same fixed piece of
pure-Python work (building small dicts and formatting strings, the kind of work a turn
does) in one process, then in two at once, and prints the throughput ratio: 2.00x means
two fully independent cores.
"""

from __future__ import annotations

import subprocess
import sys
import time

_WORK = """
import time
started = time.perf_counter()
total = 0
for i in range({n}):
    event = {{"type": "response.output_text.delta", "sequence_number": i, "delta": f"w{{i}} "}}
    total += len(str(event))
print(time.perf_counter() - started)
"""


def _run(processes: int, iterations: int) -> float:
    """Seconds of wall time until `processes` copies of the work have all finished."""
    code = _WORK.format(n=iterations)
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        for _ in range(processes)
    ]
    for proc in procs:
        proc.communicate()
    return time.perf_counter() - started


def scaling(iterations: int = 1_500_000, rounds: int = 3) -> float:
    """Throughput of two processes over one, best of `rounds` each (the least disturbed)."""
    one = min(_run(1, iterations) for _ in range(rounds))
    two = min(_run(2, iterations) for _ in range(rounds))
    return 2 * one / two


def main() -> int:
    ratio = scaling()
    print(f"two busy Python processes vs one, same work each: {ratio:.2f}x (2.00x = two cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
