# SPDX-License-Identifier: MIT
"""Runs the end-to-end tests: every test_* of every test/e2e/NN-*.py, each against a
fresh broker. Arguments filter by substring of "file::test". Prints one line per
test and ends with 'N passed, N failed'. Exit status 1 when any failed.
LUNAMQ_KEEP_FAILED=1 keeps a failed test's broker directory (its log, its store) and
prints where.

-j N (or LUNAMQ_E2E_JOBS=N): N tests at a time. Most tests wait on the network and on
timeouts rather than compute, so two at a time on two cores halve the wall time. Tests
that measure latency, CPU or memory run alone afterwards: the files in SERIAL_FILES and
the tests marked @lqtest.serial."""

import contextlib
import glob
import io
import multiprocessing
import shutil
import importlib.util
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lqtest  # noqa: E402

# files whose tests bound a neighbour's latency, CPU or memory, or load the machine
SERIAL_FILES = ("13-", "18-", "19-", "21-", "24-", "25-", "26-", "29-", "33-", "34-", "35-")

_modules = {}


def load(path):
    if path not in _modules:
        name = os.path.basename(path)[:-3].replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _modules[path] = mod
    return _modules[path]


def run_one(item):
    """One test against a fresh broker: (label, ok, what it printed)."""
    path, name = item
    label = "%s::%s" % (os.path.basename(path), name)
    fn = getattr(load(path), name)
    out = io.StringIO()
    ok = False
    with contextlib.redirect_stdout(out):
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
            ok = True
            print("ok   %s (%.2fs)" % (label, time.time() - t0))
        except Exception:
            b.stop(timeout=3)
            print("FAIL %s (%.2fs)" % (label, time.time() - t0))
            traceback.print_exc(file=sys.stdout)
            print("---- broker log (last 30 lines) ----")
            print("\n".join(b.output().splitlines()[-30:]))
            print("------------------------------------")
        finally:
            if os.environ.get("LUNAMQ_KEEP_FAILED") and not ok:
                print("kept: " + b.dir)
            else:
                shutil.rmtree(b.dir, ignore_errors=True)
    return label, ok, out.getvalue()


def is_serial(item):
    path, name = item
    base = os.path.basename(path)
    return base.startswith(SERIAL_FILES) or getattr(getattr(load(path), name), "serial", False)


def main():
    args = sys.argv[1:]
    jobs = int(os.environ.get("LUNAMQ_E2E_JOBS", "1"))
    if len(args) >= 2 and args[0] == "-j":
        jobs, args = int(args[1]), args[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    items = []
    for path in sorted(glob.glob(os.path.join(here, "[0-9][0-9]-*.py"))):
        mod = load(path)
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            label = "%s::%s" % (os.path.basename(path), name)
            if not args or any(w in label for w in args):
                items.append((path, name))
    results = []

    def report(r):
        results.append(r)
        sys.stdout.write(r[2])
        sys.stdout.flush()

    together = [i for i in items if not is_serial(i)] if jobs > 1 else []
    alone = [i for i in items if i not in together]
    if together:
        lqtest.pki_dir()  # made once, here: the workers share it and this process removes it
        # fork: the workers inherit the loaded modules; each test still gets its own broker
        with multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=20) as pool:
            for r in pool.imap_unordered(run_one, together):
                report(r)
    for item in alone:
        report(run_one(item))
    failures = [label for label, ok, _ in results if not ok]
    for f in failures:
        print("failed: " + f)
    print("e2e: %d passed, %d failed" % (len(results) - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
