"""Fake ``docker`` client (tests only).

Appends ``{"tool": "docker", "argv": [...]}`` to $FAKE_TOOLS_LOG and emulates:

* ``docker image inspect IMAGE``: succeeds for images listed in $FAKE_DOCKER_IMAGES (comma
  separated); $FAKE_DOCKER_DAEMON_DOWN=1 answers like a client whose daemon is not running;
* ``docker run [--rm] [-e K=V]... -v HOST:CTR -w CTR IMAGE bash -c SCRIPT``: runs SCRIPT on this
  machine in HOST, the way the Vitis AI image would: conda's profile script is a fake whose
  ``conda activate vitis-ai-pytorch`` succeeds, ``python`` is the test interpreter with the fake
  ``pytorch_nndct`` importable, and ``vai_c_xir`` is fake_vai_c_xir.py. With
  $FAKE_QUANTIZE_STUB=1, ``python`` only writes the quantized xmodel placeholder (for tests about
  what happens after quantization, to save the interpreter start-ups).
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONDA_PROFILE = "/opt/vitis_ai/conda/etc/profile.d/conda.sh"


def log(argv):
    with open(os.environ["FAKE_TOOLS_LOG"], "a") as fh:
        fh.write(json.dumps({"tool": "docker", "argv": argv}) + "\n")


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


def image_present(image):
    if os.environ.get("FAKE_DOCKER_DAEMON_DOWN"):
        fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    return image in os.environ.get("FAKE_DOCKER_IMAGES", "").split(",")


def run(args):
    mounts, env, workdir = [], {}, None
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--rm":
            continue
        value = args.pop(0)
        if flag == "-v":
            host, container = value.rsplit(":", 1)
            mounts.append((host, container))
        elif flag == "-e":
            key, _, val = value.partition("=")
            env[key] = val
        elif flag == "-w":
            workdir = value
        else:
            fail("fake docker: unexpected option %s" % flag, 125)
    image, command = args[0], args[1:]
    if not image_present(image):
        fail("Unable to find image '%s' locally" % image, 125)
    if len(command) != 3 or command[:2] != ["bash", "-c"]:
        fail("fake docker: expected `bash -c SCRIPT`, got %r" % command, 125)
    host_dir = next((h for h, c in mounts if c == workdir), None)
    if host_dir is None:
        fail("fake docker: -w %s is not a mounted folder" % workdir, 125)
    tools = tempfile.mkdtemp(prefix="fake-image-")
    with open(os.path.join(tools, "conda.sh"), "w") as fh:
        fh.write('conda() { [ "$1" = activate ] && [ "$2" = vitis-ai-pytorch ] || '
                 '{ echo "fake conda: no environment $2" >&2; return 1; }; }\n')
    shims = {"python": 'exec "%s" "$@"' % sys.executable,
             "vai_c_xir": 'exec "%s" "%s" "$@"' % (sys.executable, os.path.join(HERE, "fake_vai_c_xir.py"))}
    if os.environ.get("FAKE_QUANTIZE_STUB"):
        shims["python"] = "mkdir -p quantize_result && echo stub > quantize_result/DPUGraph_int.xmodel"
    for name, body in shims.items():
        path = os.path.join(tools, name)
        with open(path, "w") as fh:
            fh.write("#!/bin/sh\n%s\n" % body)
        os.chmod(path, 0o755)
    script = command[2].replace(CONDA_PROFILE, os.path.join(tools, "conda.sh"))
    child_env = dict(os.environ, PATH=tools + os.pathsep + os.environ["PATH"],
                     PYTHONPATH=os.path.join(os.path.dirname(HERE), "fake_vitis"), **env)
    return subprocess.run(["bash", "-c", script], cwd=host_dir, env=child_env).returncode


def main():
    argv = sys.argv[1:]
    log(argv)
    if argv[:2] == ["image", "inspect"]:
        if not image_present(argv[2]):
            fail("Error: No such image: %s" % argv[2])
        print(json.dumps([{"RepoTags": [argv[2]]}]))
        return 0
    if argv[:1] == ["run"]:
        return run(argv[1:])
    fail("fake docker: unsupported command %r" % argv, 125)


if __name__ == "__main__":
    sys.exit(main())
