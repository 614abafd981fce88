# SPDX-License-Identifier: MIT
"""Runs the end-to-end tests: every test_* of every test/e2e/NN-*.py, each against a
fresh broker. Arguments filter by substring of "file::test". Prints one line per
test and ends with 'N passed, N failed'. Exit status 1 when any failed.
LUNAMQ_KEEP_FAILED=1 keeps a failed test's broker directory (its log, its store) and
prints where."""

import glob
import shutil
import importlib.util
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lqtest  # noqa: E402


def load(path):
    name = os.path.basename(path)[:-3].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(here, "[0-9][0-9]-*.py")))
    wanted = sys.argv[1:]
    passed = failed = 0
    failures = []
    for path in files:
        mod = load(path)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            label = "%s::%s" % (os.path.basename(path), name)
            if wanted and not any(w in label for w in wanted):
                continue
            fn = getattr(mod, name)
            b = lqtest.Broker(getattr(fn, "conf_lines", ()))
            t0 = time.time()
            try:
                b.start()
                fn(b)
                if not b.alive() and not getattr(fn, "broker_may_exit", False):
                    raise AssertionError("broker died during the test")
                status = b.stop()
                if os.environ.get("LUNAMQ_SAN") and status not in (0, None) \
                        and not getattr(fn, "broker_may_exit", False):
                    raise AssertionError("broker exited %s under sanitizers" % status)
                passed += 1
                print("ok   %s (%.2fs)" % (label, time.time() - t0), flush=True)
            except Exception:
                b.stop(timeout=3)
                failed += 1
                failures.append(label)
                print("FAIL %s (%.2fs)" % (label, time.time() - t0), flush=True)
                traceback.print_exc()
                print("---- broker log (last 30 lines) ----")
                print("\n".join(b.output().splitlines()[-30:]))
                print("------------------------------------", flush=True)
            finally:
                if os.environ.get("LUNAMQ_KEEP_FAILED") and failures and failures[-1] == label:
                    print("kept: " + b.dir, flush=True)
                else:
                    shutil.rmtree(b.dir, ignore_errors=True)
    for f in failures:
        print("failed: " + f)
    print("e2e: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
