"""What the libraries cost a process, natively: the import of each (median of
-X importtime's cumulative figure over fresh interpreters), and one short `ip`
command run through subprocess and through sh. The README's "What each
library is for" quotes it.

    .venv/bin/python bench/libraries.py
"""

import statistics
import subprocess
import sys
import time

import sh

RUNS = 15


def import_ms(module: str) -> float:
    took = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                              capture_output=True, text=True, check=True)
        [row] = [line for line in done.stderr.splitlines() if line.rstrip().endswith(f"| {module}")]
        took.append(int(row.split("|")[1]) / 1000)
    return statistics.median(took)


def command_ms(run) -> float:
    took = []
    for _ in range(RUNS * 4):
        start = time.perf_counter()
        run()
        took.append((time.perf_counter() - start) * 1000)
    return statistics.median(took)


def main() -> None:
    for module in ("jsonschema", "sh", "asyncio", "importlib.metadata", "json", "subprocess"):
        print(f"import {module:20} {import_ms(module):6.1f} ms")
    argv = ("ip", "link", "show", "dev", "lo")
    ip = sh.Command("ip").bake(_tty_out=False)
    through_subprocess = command_ms(lambda: subprocess.run(argv, capture_output=True))
    print(f"{' '.join(argv)} through subprocess {through_subprocess:5.2f} ms")
    print(f"{' '.join(argv)} through sh         {command_ms(lambda: ip(*argv[1:])):5.2f} ms")


if __name__ == "__main__":
    main()
