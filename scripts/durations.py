"""The kernel tests' seconds in the test VM, as a run measured them: reads the
junit reports `tests/kernel_runner.py` leaves in .vm/ and writes
tests/kernel/durations.json (test id -> seconds, longest first), from which
tests/conftest.py shares the long tests out between the VM's two workers.
Also prints the seconds per test file, the table docs/internals.md shows.

    python scripts/durations.py [JUNIT ...]     default: .vm/kernel.xml .vm/kernel-alone.xml

Run it after a whole `./run-tests` when tests were added or became slower;
a test it does not list counts as short until then.
"""

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DURATIONS = REPO / "tests" / "kernel" / "durations.json"
LONG = 20.0         # seconds in the VM from which a test is placed by its time rather than taken as it comes


def measured(*reports: Path) -> dict[str, float]:
    """Test id (as pytest names it) -> seconds, for the kernel tests in `reports`."""
    seconds = {}
    for report in reports:
        for case in ET.parse(report).getroot().iter("testcase"):
            module = case.get("classname", "")
            if module.startswith("tests.kernel."):
                seconds[f"{module.replace('.', '/')}.py::{case.get('name')}"] = round(float(case.get("time", 0)), 1)
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


def per_file(seconds: dict[str, float]) -> list[tuple[str, int, float]]:
    files: dict[str, list[float]] = defaultdict(list)
    for test_id, took in seconds.items():
        files[test_id.split("::")[0].removeprefix("tests/kernel/")].append(took)
    return sorted(((name, len(times), sum(times)) for name, times in files.items()), key=lambda row: -row[2])


def main(argv: list[str]) -> int:
    reports = [Path(a) for a in argv] or [REPO / ".vm" / "kernel.xml", REPO / ".vm" / "kernel-alone.xml"]
    seconds = measured(*(r for r in reports if r.exists()))
    if not seconds:
        print("durations: no kernel test in " + ", ".join(map(str, reports)), file=sys.stderr)
        return 1
    DURATIONS.write_text(json.dumps(seconds, indent=0) + "\n")
    print("| file | tests | seconds in the VM |\n|---|---|---|")
    for name, count, total in per_file(seconds):
        print(f"| {name} | {count} | {total:.0f} |")
    print(f"| all | {len(seconds)} | {sum(seconds.values()):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
