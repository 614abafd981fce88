# SPDX-License-Identifier: MIT
"""What the bench scripts share: loopback ports and /proc readings."""

import os
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10, proc=None, log=None):
    """Wait until port accepts; a broker that exits meanwhile is an error with its log."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
    why = "exited with status %s" % proc.returncode if proc is not None and \
        proc.poll() is not None else "not open after %d s" % timeout
    tail = ""
    if log:
        with open(log, errors="replace") as f:
            tail = "".join(f.readlines()[-10:])
    raise RuntimeError("port %d: broker %s\n%s" % (port, why, tail))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_binary(kind):
    if kind == "lunamq":
        return os.environ.get("LUNAMQ_BIN", os.path.join(ROOT, "build", "lunamq"))
    if kind == "before":  # another lunamq build, for before/after figures
        return os.environ["LUNAMQ_BEFORE"]
    return "/usr/sbin/mosquitto"


def start_broker(kind, conf_path, lines, ports):
    """Write the configuration, start lunamq or mosquitto on it, wait for its ports.
    Returns the process; stop it with stop_broker (by PID)."""
    with open(conf_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = conf_path + ".log"  # what it says about itself: shown if it does not start
    with open(log, "w") as out:
        proc = subprocess.Popen([broker_binary(kind), "-c", conf_path], stdout=out, stderr=out)
    try:
        for p in ports:
            wait_port(p, proc=proc, log=log)
    except RuntimeError:
        stop_broker(proc)
        raise
    return proc


def stop_broker(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def count_publishes(buf):
    """Whole MQTT packets at the start of buf: (how many are PUBLISH, the bytes left of a
    packet still coming)."""
    n, i = 0, 0
    while len(buf) - i >= 2:
        ln, shift, j = 0, 0, i + 1
        while j < len(buf):
            c = buf[j]
            ln |= (c & 0x7F) << shift
            shift += 7
            j += 1
            if not c & 0x80:
                break
        else:
            break
        if j + ln > len(buf):
            break
        if buf[i] >> 4 == 3:
            n += 1
        i = j + ln
    return n, buf[i:]
