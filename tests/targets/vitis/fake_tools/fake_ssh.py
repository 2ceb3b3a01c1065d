"""Fake ``ssh`` and ``scp`` (tests only; the shim passes the tool name first).

Both log ``{"tool": ..., "argv": [...]}`` to $FAKE_TOOLS_LOG. The "board" is the folder
$FAKE_BOARD_HOME (its login directory): ``scp FILES HOST:DIR/`` copies into it, ``ssh HOST CMD``
runs CMD there with ``python3`` being the test interpreter and the fake ``xir``/``vart``
importable. Only $FAKE_BOARD_HOST is reachable.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    tool, argv = sys.argv[1], sys.argv[2:]
    with open(os.environ["FAKE_TOOLS_LOG"], "a") as fh:
        fh.write(json.dumps({"tool": tool, "argv": argv}) + "\n")
    home, host = os.environ["FAKE_BOARD_HOME"], os.environ["FAKE_BOARD_HOST"]
    args = [a for a in argv if a != "-q"]
    for flag in ("-p", "-P"):
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    if tool == "scp":
        *files, dest = args
        dest_host, _, dest_dir = dest.partition(":")
        if dest_host != host:
            print("ssh: connect to host %s port 22: No route to host" % dest_host, file=sys.stderr)
            return 1
        for f in files:
            shutil.copy(f, os.path.join(home, dest_dir))
        return 0
    target, command = args[0], " ".join(args[1:])
    if target != host:
        print("ssh: connect to host %s port 22: No route to host" % target, file=sys.stderr)
        return 255
    tools = tempfile.mkdtemp(prefix="fake-board-")
    with open(os.path.join(tools, "python3"), "w") as fh:
        fh.write('#!/bin/sh\nexec "%s" "$@"\n' % sys.executable)
    os.chmod(os.path.join(tools, "python3"), 0o755)
    env = dict(os.environ, PATH=tools + os.pathsep + os.environ["PATH"],
               PYTHONPATH=os.path.join(os.path.dirname(HERE), "fake_vitis"))
    return subprocess.run(["bash", "-c", command], cwd=home, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
