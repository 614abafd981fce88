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


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not open" % port)


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
    return "/usr/sbin/mosquitto"


def start_broker(kind, conf_path, lines, ports):
    """Write the configuration, start lunamq or mosquitto on it, wait for its ports.
    Returns the process; stop it with stop_broker (by PID)."""
    with open(conf_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    proc = subprocess.Popen([broker_binary(kind), "-c", conf_path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for p in ports:
        wait_port(p)
    return proc


def stop_broker(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
