"""The benchmarks run end to end in --quick mode on synthetic data and print their tables.

Those that run a benchmark are marked `bench`: make test runs them, make test-fast leaves them out.
"""

import pytest
import torch

from bench import throughput
from bench.flops import bf16_peak_tflops, flops_per_image


def test_flops_match_the_issue_figure():
    forward, step = flops_per_image()
    assert forward == 125_485_056  # 62,742,528 multiply-adds, counted by hand layer by layer
    assert 2.9 < step / forward < 3.1


@pytest.mark.bench
def test_throughput_quick_prints_the_table_with_ratio_columns(capsys):
    assert throughput.main(["--quick", "--device", "cpu", "--batch-sizes", "10", "--steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("batch"))
    for column in ("(a) Trainer img/s", "(b) DataLoader w=0 img/s", "(c) plain loop img/s", "a/b", "a/c"):
        assert column in header
    row = lines[lines.index(header) + 1].split()
    assert row[:2] == ["10", "1"] and all(float(v) > 0 for v in row[2:])
    assert len(row) == 7


@pytest.mark.bench
def test_accuracy_quick_compares_trainer_with_the_plain_loop(capsys):
    code = throughput.main(["--accuracy", "--quick", "--device", "cpu", "--bf16"])
    out = capsys.readouterr().out
    assert "plain fp32 loop" in out and "Trainer (fp32)" in out and "Trainer (bf16)" in out
    assert out.strip().splitlines()[-1].startswith("PASS" if code == 0 else "FAIL")


@pytest.mark.bench
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_throughput_quick_on_cuda_prints_epoch_seconds_and_tflops(capsys):
    assert throughput.main(["--quick", "--device", "cuda", "--batch-sizes", "100", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "a s/epoch" in out and "a TFLOP/s" in out
    assert bf16_peak_tflops(torch.device("cuda")) is None or "%" in out.splitlines()[-1]


@pytest.mark.bench
def test_storage_rate_bench_runs_on_both_backends_without_lock_errors(pg_server, capsys):
    from bench import storage_rate

    assert storage_rate.main(["--workers", "2", "--trials", "8", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["sqlite"], ["postgresql"])
    }
    assert set(rows) == {"sqlite", "postgresql"} and all(float(r[1]) > 0 for r in rows.values())
    assert "ratio postgresql/sqlite" in out and '"database is locked" errors: 0' in out
