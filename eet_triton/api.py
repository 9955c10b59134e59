"""`eet_triton.load`: a HuggingFace checkpoint in, a ready model out.

    resolve the checkpoint -> read config.json -> pick the map -> ModelSpec -> skeleton on the
    device -> stream the weights in -> (CUDA graphs) -> a model called like the transformers one
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import traceback
from typing import Any, Mapping

import torch

from eet_triton._backend import INTERPRET
from eet_triton.errors import DeviceError, MappingError, UnsupportedModelError
from eet_triton.mapping import (
    CheckpointReader,
    StructureMap,
    as_dtype,
    load_into,
    lookup_config,
    read_config,
    resolve_checkpoint,
    select_map,
)
from eet_triton.models.base import device_guard
from eet_triton.models.registry import ARCHITECTURES, architecture_of, build_model, build_spec

__all__ = ["compose_parts", "load", "load_config"]


def load(name_or_path: str | os.PathLike, device: int | str | torch.device = 0, dtype: str | torch.dtype = "fp16",
         mapping: str | os.PathLike | StructureMap | None = None, *, use_cuda_graph: bool = True,
         progress: bool | None = None) -> torch.nn.Module:
    """Load a HuggingFace checkpoint as an eet_triton model.

    name_or_path: a folder with config.json and weights, or a hub id already in the local
        HuggingFace cache (nothing is downloaded).
    device: a GPU index, "cuda", "cuda:N", a torch.device, or "cpu" (Triton's CPU interpreter:
        exact but slow, for tests and tiny models; needs TRITON_INTERPRET=1, which eet_triton sets
        itself on a machine without CUDA).
    dtype: "fp16", "bf16", "fp32" or a torch floating dtype: the weights' and outputs' dtype.
    mapping: a structure map (a YAML path, a built-in family name or a StructureMap) instead of
        the built-in map chosen by config.json's model_type and architectures (docs/MAPS.md).
    use_cuda_graph: replay the forward as CUDA graphs, one per input signature (GPU only).
    progress: a progress bar while weights stream in; None: when stderr is a terminal.

    Returns an nn.Module (eval mode) whose call takes the transformers class's inputs
    (input_ids, attention_mask, token_type_ids, position_ids, pixel_values, as the class takes)
    and returns its output class. `model.spec` is its ModelSpec, `model.capture(batch_sizes=...,
    seq_lens=...)` captures CUDA graphs ahead of time. When loading fails nothing stays
    allocated on the device.
    """
    device = _as_device(device)
    dtype = as_dtype(dtype)
    path = resolve_checkpoint(name_or_path)
    config = load_config(path)
    structure_map = _select(config, mapping)
    structure_map, towers = compose_parts(structure_map, config)
    spec = build_spec(structure_map, config, towers=towers)
    if progress is None:
        progress = sys.stderr.isatty()
    with CheckpointReader(path) as reader:
        model = None
        try:
            with device_guard(device):
                model = build_model(spec, dtype=dtype, device=device)
                load_into(model, structure_map, reader, dtype=dtype, device=device, config=config,
                          progress=progress)
        except BaseException as exc:
            model = None
            _release(exc, device)
            raise
    model.eval()
    if use_cuda_graph and device.type == "cuda":
        model.use_cuda_graphs()
    return model


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json as a dict with transformers' defaults filled in (a saved config may leave out
    attributes equal to their defaults); the raw file when transformers does not know the model_type."""
    raw = read_config(path)
    try:
        from transformers import AutoConfig

        full = AutoConfig.from_pretrained(os.fspath(path), local_files_only=True).to_dict()
    except (ImportError, ValueError, KeyError, OSError):
        return raw
    return {**raw, **full}


def compose_parts(structure_map: StructureMap, config: Mapping) -> tuple[StructureMap, dict[str, str]]:
    """Fill each part the map leaves empty (a dual encoder's towers) with the map of its
    sub-config's model_type, placed under the part's target and source prefixes.

    Returns the composed map and, per composed part, the tower's architecture (the sub-map's base
    model). A part with its own entries is left as it is.
    """
    rules = list(structure_map.rules)
    parts = dict(structure_map.parts)
    ignore = list(structure_map.ignore)
    towers: dict[str, str] = {}
    for name, part in structure_map.parts.items():
        if any(rule.part == name for rule in structure_map.rules):
            continue
        sub_config = lookup_config(config, part.config) if part.config else None
        if not isinstance(sub_config, Mapping):
            raise MappingError(f"{structure_map.origin}: parts.{name} has no entries of its own, so it takes the map "
                               f"of its sub-config; it needs `config:` naming an object of config.json")
        sub = _select(sub_config, None)
        if sub.parts:
            raise MappingError(f"{structure_map.origin}: parts.{name} would take the {sub.family!r} map, which has "
                               f"parts of its own; nesting parts is not supported")
        towers[name] = architecture_of(sub, sub_config)
        parts[name] = dataclasses.replace(part, spec={**sub.spec, **part.spec})
        for rule in sub.rules:
            rules.append(dataclasses.replace(
                rule, target=_join(part.target, rule.target), part=name,
                sources=tuple(dataclasses.replace(s, key=_join(part.source, s.key),
                                                  alternatives=tuple(_join(part.source, k) for k in s.alternatives))
                              for s in rule.sources),
                entry=f"{rule.entry} of {sub.origin} (parts.{name})"))
        ignore += [_join(part.source, pattern) for pattern in sub.ignore]
    if not towers:
        return structure_map, towers
    return dataclasses.replace(structure_map, parts=parts, rules=tuple(rules), ignore=tuple(ignore)), towers


def _select(config: Mapping, mapping) -> StructureMap:
    try:
        return select_map(config, mapping)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(
            f"{exc}\neet_triton builds these architectures: {', '.join(ARCHITECTURES)}. For another checkpoint "
            "layout of one of them, write a YAML structure map (docs/MAPS.md) and pass load(..., mapping=<path>)."
        ) from None


def _as_device(device) -> torch.device:
    if isinstance(device, bool):
        raise DeviceError(f"device must be a GPU index, 'cuda', 'cuda:N' or 'cpu', got {device!r}")
    if isinstance(device, int):
        device = torch.device("cuda", device)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device must be a GPU index, 'cuda', 'cuda:N' or 'cpu', got {device!r}") from exc
    if device.type == "cpu":
        if not INTERPRET:
            raise DeviceError("device='cpu' runs the kernels in Triton's CPU interpreter, which must be chosen "
                              "before triton is imported: set TRITON_INTERPRET=1 in the environment, or load onto "
                              "a GPU (device=0)")
        return device
    if device.type != "cuda":
        raise DeviceError(f"eet_triton runs on CUDA GPUs or the CPU interpreter; got device {device}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device} asked for, but torch sees no CUDA GPU; pass device='cpu' for the "
                          "(slow) CPU interpreter")
    index = torch.cuda.current_device() if device.index is None else device.index
    if not 0 <= index < torch.cuda.device_count():
        raise DeviceError(f"device {device}: there are {torch.cuda.device_count()} CUDA device(s), "
                          f"0..{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def _release(exc: BaseException, device: torch.device) -> None:
    """Drop a half-built model: the traceback's frames still hold it (load_into's `model`), so
    clear their locals, collect, and hand the cached blocks back to the driver."""
    traceback.clear_frames(exc.__traceback__)
    gc.collect()
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.empty_cache()


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)

