# SPDX-License-Identifier: MIT
"""Shared harness of the end-to-end tests.

A test module is test/e2e/NN-area-what.py with functions named test_*(b), where b is
a running Broker on a free 127.0.0.1 port, started fresh for that test. A test that
needs configuration lines declares them with @conf("max_packet_size 100", ...).
The broker binary is $LUNAMQ_BIN (default build/lunamq). With
LUNAMQ_BIN=/usr/sbin/mosquitto the same tests run against mosquitto, which is how a
test's expectations can be checked against another broker.
Only loopback is ever used; processes are stopped by PID."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("LUNAMQ_BIN", os.path.join(ROOT, "build", "lunamq"))
HOST = "127.0.0.1"


CTL = os.path.join(os.path.dirname(BIN), "lunamq-ctl")


def conf(*lines):
    """Decorator: extra configuration lines for one test."""
    def wrap(fn):
        fn.conf_lines = list(lines)
        return fn
    return wrap


def serial(fn):
    """Decorator: the test measures latency, CPU or memory: run.py -j runs it alone."""
    fn.serial = True
    return fn


def may_exit(fn):
    """Decorator: the test stops the broker itself."""
    fn.broker_may_exit = True
    return fn


_pki = None


def pki_dir():
    """The test PKI of examples/certs/make-certs.sh, made once per run."""
    global _pki
    if _pki is None:
        d = tempfile.mkdtemp(prefix="lunamq-pki-")
        subprocess.run(["sh", os.path.join(ROOT, "examples", "certs", "make-certs.sh"), d],
                       check=True, stdout=subprocess.DEVNULL)
        _pki = d
        atexit.register(shutil.rmtree, d, True)
    return _pki


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0, proc=None):
    """True once port accepts; False after timeout, or as soon as proc (if given) exits."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


class Broker:
    """One broker process with its own config file and log."""

    def __init__(self, conf_lines=(), port=None, listeners=True):
        self.port = port or free_port()
        self.tls_port = free_port()  # for lines that say {tls_port}
        self.dir = tempfile.mkdtemp(prefix="lunamq-e2e-")
        self.conf_path = os.path.join(self.dir, "lunamq.conf")
        self.log_path = os.path.join(self.dir, "broker.log")
        with open(self.conf_path, "w") as f:
            if listeners:
                f.write("listener %d %s\n" % (self.port, HOST))
            f.write("allow_anonymous true\n")
            self.scripts = os.path.join(self.dir, "scripts")  # empty: no hooks unless a test adds
            os.makedirs(self.scripts)
            self.admin = os.path.join(self.dir, "admin.sock")
            if "mosquitto" not in os.path.basename(BIN):
                f.write("scripts_dir %s\n" % self.scripts)
                f.write("admin_socket %s\n" % self.admin)
            for line in conf_lines:
                if "{pki}" in line:
                    line = line.replace("{pki}", pki_dir())
                line = line.replace("{dir}", self.dir)
                f.write(line.replace("{tls_port}", str(self.tls_port)) + "\n")
        self.proc = None
        self.uses_tls_port = listeners and any("{tls_port}" in l for l in conf_lines)

    def start(self, wait=True, env=None, pipe_log=False):
        """Start the broker. env: extra environment variables for it (e.g. a crash point).
        pipe_log: its output goes through a pipe that a thread copies into the log file,
        so a file size limit set on the broker (RLIMIT_FSIZE) does not stop its log."""
        self.log = open(self.log_path, "ab")
        args = [BIN, "-c", self.conf_path]
        if "mosquitto" not in os.path.basename(BIN):
            args.append("-v")
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE if pipe_log else self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=full_env)
        self._copier = None
        if pipe_log:
            import threading
            self._copier = threading.Thread(target=self._copy_log, args=(self.proc, self.log),
                                            daemon=True)
            self._copier.start()
        if wait and not wait_port(self.port, proc=self.proc):
            self.stop()
            raise RuntimeError("broker did not start:\n" + self.output())
        # a TLS listener opens after its certificates load: wait for it too
        if wait and self.uses_tls_port and not wait_port(self.tls_port):
            self.stop()
            raise RuntimeError("TLS listener did not open:\n" + self.output())
        return self

    @staticmethod
    def _copy_log(proc, log):
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            try:
                log.write(chunk)
                log.flush()
            except (ValueError, OSError):  # log closed by stop()
                break

    @property
    def pid(self):
        return self.proc.pid

    def kill(self, timeout=10.0):
        """SIGKILL by PID (a crash: nothing flushed, no goodbye); returns the exit status."""
        return self.stop(signal.SIGKILL, timeout)

    def restart(self, env=None, wait=True, pipe_log=False):
        """Start again on the same port with the same config (and so the same persistence
        directory). The previous process must have stopped (stop() or kill())."""
        assert not self.alive(), "restart() of a running broker"
        return self.start(wait=wait, env=env, pipe_log=pipe_log)

    def start_or_exit(self, env=None, timeout=10.0, pipe_log=False):
        """Start without asserting it listens: returns True once the port opens, False
        when the process exits first (then self.proc.returncode says how)."""
        self.start(wait=False, env=env, pipe_log=pipe_log)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                self._close_log()
                return False
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("broker neither listened nor exited in %.0f s:\n%s"
                           % (timeout, self.output()))

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=5.0):
        """Wait until the broker's log contains needle; returns True if it did."""
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.output():
                return True
            time.sleep(0.05)
        return False

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=None, timeout=10.0):
        """Stop by PID; returns the exit status. Kills if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        rc = self.proc.returncode
        return rc

    def _close_log(self):
        if getattr(self, "_copier", None) is not None:
            self._copier.join(5)  # the pipe ends with the process: copy what is left
            self._copier = None
            self.proc.stdout.close()
        self.log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


def rss_kb(pid):
    """Resident memory of a process, kB (the broker's, for memory bounds)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def install_hook(b, name, src, expect="loaded"):
    """Write a hook file into b's scripts_dir (atomically, as editors and deploy tools do)
    and wait until the broker has loaded it, or logged `expect` about it."""
    marker = "hook %s: %s" % (name, expect)
    before = b.output().count(marker)
    tmp = os.path.join(b.scripts, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(src)
    os.rename(tmp, os.path.join(b.scripts, name))
    assert wait_for(lambda: b.output().count(marker) > before, 5), b.output()
