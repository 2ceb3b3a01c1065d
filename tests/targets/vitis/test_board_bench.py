"""board bench: scp the bundle, ssh run_kv260.py, bring back edgeprune bench's JSON (fake ssh/scp and DPU)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from targets.bench import BenchResult
from targets.vitis.board import BoardBenchConfig, board_bench
from toolchain.core.errors import EdgepruneError, InputFileError

from vitis_testlib import invoke, one_error_line


def test_bundle_is_copied_and_run_with_the_requested_settings(fake_tools, fake_bundle, tmp_path):
    cfg = BoardBenchConfig(host="root@kv260", bundle=fake_bundle, threads=2, iterations=5, warmup=1)
    result = board_bench(cfg)
    ssh, scp = fake_tools.calls("ssh"), fake_tools.calls("scp")
    assert ssh == [["root@kv260", "mkdir -p edgeprune_kv260"],
                   ["root@kv260", "cd edgeprune_kv260 && python3 run_kv260.py --json --threads 2 --warmup 1 "
                                  "--iterations 5 bench"]]
    assert scp == [["-q", str(fake_bundle / "run_kv260.py"), str(fake_bundle / "metadata.yaml"),
                    str(fake_bundle / "fake.xmodel"), "root@kv260:edgeprune_kv260/"]]
    assert set(result) == {f.name for f in dataclasses.fields(BenchResult)}
    assert result["backend"] == "vart" and result["iterations"] == 5 and result["threads"] == 2
    assert "fingerprint fake" in result["device"]


def test_cli_json_e2e_and_clear_failures(fake_tools, fake_bundle, tmp_path):
    run = invoke("board", "bench", "--host", "root@kv260", "--bundle", fake_bundle, "--mode", "e2e", "--source",
                 "synthetic", "--iterations", "3", "--warmup", "0", "--port", "2222", "--json")
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert result["mode"] == "e2e" and result["includes_pre_post"] is True
    assert fake_tools.calls("ssh")[-1][:3] == ["-p", "2222", "root@kv260"]
    assert fake_tools.calls("scp")[-1][:3] == ["-q", "-P", "2222"]

    line = one_error_line(invoke("board", "bench", "--host", "root@elsewhere", "--bundle", fake_bundle))
    assert "failed (exit 255): ssh: connect to host root@elsewhere port 22: No route to host" in line

    with pytest.raises(InputFileError, match="is not a board bundle"):
        board_bench(BoardBenchConfig(host="root@kv260", bundle=tmp_path))
    with pytest.raises(EdgepruneError, match="--mode streams takes 4 --source values"):
        board_bench(BoardBenchConfig(host="root@kv260", bundle=fake_bundle, mode="streams", sources=("a.mp4",)))
