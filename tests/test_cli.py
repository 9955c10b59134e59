"""The eet-triton command through main([...]): info, compare on a tiny BERT, bench refusing without
a GPU, and the demo (tiny CLIP in the interpreter on the CPU; ViT-B/32 with the speed table on a GPU)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from transformers import BertConfig, BertModel

from eet_triton.cli import main

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64)
        BertModel(config).eval().save_pretrained(folder)
    return folder


def rel_errors(text: str) -> dict[str, float]:
    """layer name -> our rel err (the 4th column) from a printed table."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^(embeddings|layer \d+|last_hidden_state|pooler_output)\s+\S+\s+(\S+)\s+(\S+)", line)
        if match:
            found[match.group(1)] = float(match.group(3))
    return found


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("eet_triton", "torch", "triton", "transformers", "kernels"):
        assert word in out
    assert ("interpreted" in out) == (not HAS_CUDA)


def test_compare_prints_the_table(tiny_bert, device, capsys):
    assert main(["compare", str(tiny_bert), "--dtype", "fp32", "--batch", "3", "--seq", "11", "--device", device]) == 0
    out = capsys.readouterr().out
    errors = rel_errors(out)
    assert list(errors) == ["embeddings", "layer 0", "layer 1", "last_hidden_state", "pooler_output"]
    assert all(err <= 1e-5 for err in errors.values()), errors
    assert "3x11x32" in out and "worst:" in out


def test_compare_fp16_json(tiny_bert, device, capsys):
    assert main(["compare", str(tiny_bert), "--device", device, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dtype"] == "fp16"
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == {"embeddings", "layer 0", "layer 1", "last_hidden_state", "pooler_output"}
    for row in rows.values():
        assert math.isfinite(row["max_abs"])
        assert row["rel_err"] <= 2 * row["hf_rel_err"] + 1e-3, row


def test_compare_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "eet-triton compare" in err and "nowhere" in err


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit) as exc:
        main(["bench", "x", "--batch", "1,zero"])
    assert exc.value.code == 2


@pytest.mark.skipif(HAS_CUDA, reason="the refusal is for machines without a GPU")
def test_bench_refuses_without_gpu(tiny_bert, capsys):
    assert main(["bench", str(tiny_bert), "--batch", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "eet-triton compare" in err


@pytest.mark.skipif(HAS_CUDA, reason="on a GPU the demo runs ViT-B/32: test_demo_gpu")
def test_demo_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EET_TRITON_CACHE", str(tmp_path))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "tiny CLIP" in out and str(tmp_path) in out and "Saved it" in out
    assert "text.layer 1" in out and "vision.layer 1" in out and "logits_per_image" in out
    assert "Speed: not measured" in out
    assert main(["demo"]) == 0, "the second run reuses the saved checkpoint"
    assert "saved earlier" in capsys.readouterr().out


@pytest.mark.gpu
def test_demo_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EET_TRITON_CACHE", str(tmp_path))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "text.layer 11" in out and "vision.layer 11" in out and "logits_per_image" in out
    assert "x vs transformers (sdpa)" in out and re.search(r"batch 32: eet_triton [\d.]+ ms", out)


@pytest.mark.gpu
def test_bench_gpu_small(tiny_bert, capsys):
    assert main(["bench", str(tiny_bert), "--batch", "1,4", "--seq", "16", "--no-compile"]) == 0
    out = capsys.readouterr().out
    assert "| 1 |" in out and "| 4 |" in out and "peak memory at batch 4" in out and "FAILED" not in out
