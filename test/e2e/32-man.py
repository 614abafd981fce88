# SPDX-License-Identifier: MIT
"""The manual pages of man/: each renders without a warning from man and groff, every
option the configuration parser takes is in lunamq.conf(5) (and every option it refuses
in its list of mosquitto options not supported), and every lunamq-ctl command is in
lunamq-ctl(1). The lists come from the sources, so a new option or command without its
documentation fails here."""

import os
import re
import shutil
import subprocess

from lqtest import ROOT

MAN = os.path.join(ROOT, "man")


def page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read()


def source(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def render_warnings(name):
    """Everything man and groff say on stderr while rendering the page (warnings on)."""
    path = os.path.join(MAN, name)
    for tool in ("man", "groff"):
        assert shutil.which(tool), "%s is missing: make deps installs man-db and groff-base" % tool
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    out = []
    # as a reader gets it, and groff with every warning on and mdoc's own checks
    for cmd in (["man", "--warnings", "-l", path],
                ["groff", "-mandoc", "-ww", "-z", "-Tutf8", path]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 0, "%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr)
        if p.stderr.strip():
            out.append("%s:\n%s" % (" ".join(cmd), p.stderr))
    text = subprocess.run(["man", "-l", path], capture_output=True, text=True, env=env,
                          timeout=30).stdout
    return "\n".join(out), text


def check_renders(name, title):
    warnings, text = render_warnings(name)
    assert not warnings, "%s renders with warnings:\n%s" % (name, warnings)
    assert title in text and "NAME" in text and "SEE ALSO" in text, text[:400]


def macro_words(text, macro):
    """The first argument of each use of an mdoc macro (Ic, Cm) in the page."""
    return set(re.findall(r"(?:^\.|\s)%s ([^\s]+)" % macro, text, re.M))


def conf_table(name):
    """The option names of a table of broker/core/conf.c: {"name", ...} rows of name[]."""
    src = source("broker/core/conf.c")
    m = re.search(r"\b%s\[\] = \{(.*?)\n\};" % name, src, re.S)
    assert m, "no %s[] table in conf.c" % name
    names = re.findall(r'^\s*\{"([^"]+)",', m.group(1), re.M)
    assert len(names) > 5, names
    return names


def test_lunamq_8_renders(_b):
    check_renders("lunamq.8", "LUNAMQ(8)")


def test_lunamq_conf_5_renders(_b):
    check_renders("lunamq.conf.5", "LUNAMQ.CONF(5)")


def test_lunamq_ctl_1_renders(_b):
    check_renders("lunamq-ctl.1", "LUNAMQ-CTL(1)")


def test_lunamq_hooks_7_renders(_b):
    check_renders("lunamq-hooks.7", "LUNAMQ-HOOKS(7)")


def test_every_conf_option_is_documented(_b):
    text = page("lunamq.conf.5")
    documented = macro_words(text, "Ic")
    missing = [n for n in conf_table("options") if n not in documented]
    assert not missing, "options of conf.c not in man/lunamq.conf.5: %s" % missing
    # the options conf.c refuses by name are in the section of unsupported ones
    unsupported = text.split(".Sh MOSQUITTO OPTIONS NOT SUPPORTED", 1)
    assert len(unsupported) == 2, "no MOSQUITTO OPTIONS NOT SUPPORTED section"
    section = unsupported[1].split("\n.Sh ", 1)[0]
    listed = macro_words(section, "Ic")
    missing = [n for n in conf_table("refused") if n not in listed]
    assert not missing, "refused options not in the unsupported list: %s" % missing
    # and what that list names as refused is indeed no option of conf.c (an item of one
    # word: "log_dest topic" is a value of an option that exists)
    accepted = set(conf_table("options"))
    for line in section.splitlines():
        if line.startswith(".It "):
            for item in line[4:].split(" , "):
                words = item.split()
                if len(words) == 2 and words[0] == "Ic":
                    assert words[1] not in accepted, \
                        "%s is listed as not supported but conf.c takes it" % words[1]


def test_every_ctl_command_is_documented(_b):
    src = source("broker/ctl.c")
    m = re.search(r"known\[\] = \{(.*?)\};", src, re.S)
    assert m, "no known[] command list in ctl.c"
    commands = set(re.findall(r'"([a-z]+)"', m.group(1)))
    assert len(commands) > 5, commands
    # the usage text names the sub-commands too: "hooks test", "persistence snapshot"...
    usage = re.search(r"^usage\(FILE \*f\)\n\{(.*?)\n\}", src, re.S | re.M)
    assert usage, "no usage() in ctl.c"
    for line in re.findall(r'"  ([a-z][^"]*)"', usage.group(1)):
        words = []
        for w in re.split(r"\s{2,}", line)[0].split():  # the command, not its description
            if not re.fullmatch(r"[a-z]+", w):
                break
            words.append(w)
        commands.add(" ".join(words))
    assert {"passwd", "hooks test", "hooks reload", "acl check"} <= commands, commands
    text = page("lunamq-ctl.1")
    items = [line[7:] for line in text.splitlines() if line.startswith(".It Cm ")]
    missing = [c for c in sorted(commands)
               if not any(re.match(r"%s(\s|$)" % re.escape(c), it) for it in items)]
    assert not missing, "lunamq-ctl commands not in man/lunamq-ctl.1: %s" % missing
