"""Programmatic dependent launch: the rule that keeps it safe, checked on the kernel sources.

Under PDL a kernel starts while its predecessor in the stream still runs, so every kernel must
wait (`wait_for_predecessor(PDL)`) before it touches global memory. The GPU suite runs the
kernels with PDL on (compute capability 9+); this checks the rule itself, on any machine, for
every kernel, including ones added later."""

import ast
import pathlib

import pytest
import torch

from eet_triton.kernels import _common

KERNEL_FILES = sorted((pathlib.Path(_common.__file__).parent).glob("*.py"))


def _kernels():
    for path in KERNEL_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_kernel"):
                yield pytest.param(node, id=f"{path.stem}.{node.name}")


@pytest.mark.parametrize("kernel", list(_kernels()))
def test_every_kernel_waits_for_its_predecessor_first(kernel):
    assert "PDL" in [a.arg for a in kernel.args.args], f"{kernel.name} takes no PDL constexpr"
    body = [s for s in kernel.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    first = ast.unparse(body[0])
    assert first == "wait_for_predecessor(PDL)", f"{kernel.name} starts with {first!r}"


def test_kernels_found():
    names = {p.id for p in _kernels()}
    assert {"linear._linear_kernel", "linear._linear_tma_kernel", "attention._attention_kernel",
            "layernorm._layer_norm_kernel", "embedding._embedding_kernel",
            "embedding._patch_embedding_kernel"} <= names


def test_launch_args_off_where_pdl_cannot_run(monkeypatch):
    device = torch.device("cuda", 0)
    monkeypatch.setattr(_common, "_pdl_capable", lambda index: True)
    monkeypatch.setattr(_common, "INTERPRET", False)
    assert _common.pdl_launch_args(device) == {"PDL": True, "launch_pdl": True}
    monkeypatch.setattr(_common, "PDL_ENABLED", False)
    assert _common.pdl_launch_args(device) == {"PDL": False}
    monkeypatch.setattr(_common, "PDL_ENABLED", True)
    monkeypatch.setattr(_common, "_pdl_capable", lambda index: False)  # before Hopper
    assert _common.pdl_launch_args(device) == {"PDL": False}
    monkeypatch.setattr(_common, "INTERPRET", True)  # the interpreter has no griddepcontrol
    assert _common.pdl_launch_args(device) == {"PDL": False}
