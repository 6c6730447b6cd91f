"""Run every benchmarks/bench_*.py module's rows() and print one table."""

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import Row, print_table


def main(argv: list[str]) -> int:
    only = argv[1:]
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if only:
        names = [n for n in names if any(o in n for o in only)]
    rows: list[tuple[str, Row]] = []
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows += [(name[6:], r) for r in module.rows()]
        except Exception:
            failed += 1
            traceback.print_exc()
            rows.append((name[6:], Row("benchmark failed to run (see above)", "-", "-", False)))
        print(f"  {name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
