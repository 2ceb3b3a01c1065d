"""The cfg2py / cfg2ir / cfg-prune commands: help, tables, JSON, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from darknet_testlib import cfg_path

from cfg_codegen.weights import WeightsHeader
from toolchain.cli.main import cli
from toolchain.core.fileio import sha256_of


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if "rror" in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", ["cfg2py", "cfg2ir", "cfg-prune"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output and "--out" in result.output


def test_cfg2py_table_and_errors(tmp_path):
    cfg = cfg_path("yolov3-tiny.cfg")
    result = invoke("cfg2py", cfg, "--out", tmp_path / "m.py")
    assert result.exit_code == 0, result.output
    assert "yolo layers" in result.output and "16, 23" in result.output and (tmp_path / "m.py").exists()
    odd = tmp_path / "odd.cfg"
    odd.write_text(cfg.read_text().replace("[maxpool]\nsize=2\nstride=2", "[maxpool]\nsize=2\ncolour=red\nstride=2", 1))
    result = invoke("cfg2py", odd, "--out", tmp_path / "odd.py")
    assert result.exit_code == 0 and "note: " in result.stderr
    assert "odd.cfg:35: [maxpool] (layer 1) key 'colour': unknown key, ignored" in result.stderr
    assert_one_line_error(invoke("cfg2py", cfg_path("yolov2-tiny.cfg"), "--out", tmp_path / "x.py"),
                          "unsupported: [region]", "yolov2-tiny.cfg:")
    bad = tmp_path / "bad.cfg"
    bad.write_text(cfg.read_text().replace("filters=255", "filters=25x", 1))
    assert_one_line_error(invoke("cfg2py", bad, "--out", tmp_path / "x.py"), "bad.cfg:", "key 'filters'", "'25x'")
    copy = tmp_path / "copy.cfg"
    copy.write_text(cfg.read_text())
    digest = sha256_of(copy)
    assert_one_line_error(invoke("cfg2py", copy, "--out", copy), "is the input file")
    assert sha256_of(copy) == digest


def test_cfg2ir_and_cfg_prune_errors(tmp_path):
    cfg = cfg_path("yolov3-tiny.cfg")
    short = tmp_path / "short.weights"
    short.write_bytes(WeightsHeader().to_bytes() + b"\0" * 400)  # version 0.2.5: 20-byte header, 100 floats
    assert_one_line_error(invoke("cfg2ir", cfg, short, "--out", tmp_path / "ir"),
                          "short.weights", "expects 8858734 floats", "the file has 100")
    result = invoke("cfg2ir", cfg, "--out", tmp_path / "ir", "--precision", "int8")
    assert result.exit_code == 2 and "INT8 needs calibration images: pass --data DATA" in result.output
    result = invoke("cfg-prune", cfg, short, "--out", tmp_path / "p")
    assert result.exit_code == 2 and "nothing to prune" in result.output
    result = invoke("cfg-prune", cfg, short, "--out", tmp_path / "p", "--global-percent", 1.5)
    assert result.exit_code == 2 and "must be in [0, 1), got 1.5" in result.output
    assert_one_line_error(invoke("cfg-prune", cfg, short, "--out", tmp_path / "p", "--global-percent", 0.5),
                          "expects 8858734 floats")
    assert not (tmp_path / "ir").exists() and not (tmp_path / "p").exists()


def test_json_error_object(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "cfg2py", cfg_path("efficientnet-lite3.cfg"),
                           "--out", tmp_path / "m.py", "--json"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["error"].startswith("unsupported: [softmax]")
