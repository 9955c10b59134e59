"""Stream a checkpoint's tensors into a model's parameters, routed by a structure map.

`load_into` first plans every copy from the checkpoint's headers and the model's tensors, without
reading any data: each route's target must exist when its keys do (and the reverse), shapes must
fit, every checkpoint key must be used or ignored, and every tensor of the model's state_dict must
be filled. All problems are reported together in one CheckpointError. Only then does it copy:
one checkpoint tensor read, cast and copied into its (slice of a) device parameter, and dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from eet_triton.errors import CheckpointError, DeviceError, DTypeError
from eet_triton.mapping.checkpoint import CheckpointReader, read_config
from eet_triton.mapping.structure_map import Route, Source, StructureMap

_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32}
_LISTED = 20  # lines per problem kind in an error message


@dataclass
class LoadResult:
    """What load_into did: checkpoint tensors read and their bytes, model targets filled, checkpoint
    keys skipped because the model lacks their head, and keys the map's `ignore` dropped."""

    tensors: int = 0
    bytes: int = 0
    filled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass
class _Copy:
    target: str
    tensor: torch.Tensor
    pieces: list[tuple[str, str | None, int | None]]  # (checkpoint key, transform, rows; None: whole target)


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch floating dtype from a torch.dtype or a name such as "fp16", "bf16", "fp32"."""
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise DTypeError(f"dtype must be a floating torch.dtype or one of {', '.join(_DTYPES)}, got {dtype!r}.")


def load_into(model: nn.Module, structure_map: StructureMap, reader: CheckpointReader, *,
              dtype: torch.dtype | str, device: torch.device | str | int, config: dict | None = None,
              progress: bool = False) -> LoadResult:
    """Fill every parameter (and persistent buffer) of `model` from `reader` as `structure_map` routes.

    model: the skeleton, its tensors already on `device` (any content) or on the "meta" device
    (then allocated on `device` in `dtype`, keeping the parameter objects, so shared and tied
    parameters stay shared). A parameter keeps its own dtype (an op may hold its norm in fp32):
    every copy casts to it. config: config.json as a dict (default: read from the reader's folder),
    for the layer counts of `{i}`. progress: a tqdm bar over the tensors read.
    Raises CheckpointError (listing every unfilled parameter with the key the map expected, every
    unused checkpoint key, every key whose target the model lacks, every shape mismatch) before
    anything is copied; DeviceError when a tensor of the model is on another device.
    """
    dtype = as_dtype(dtype)
    device = torch.device(device)
    if config is None:
        config = read_config(reader.folder)
    routes = structure_map.routes(config)
    names = _checkpoint_names(structure_map, reader)
    copies, result = _plan(model, structure_map, reader, routes, names)
    for copy in copies:
        _check_device(copy, device)
    for copy in copies:
        _allocate(copy, dtype, device)
    order = {key: n for n, key in enumerate(reader.keys())}
    copies.sort(key=lambda c: order[c.pieces[0][0]])
    total = sum(len(c.pieces) for c in copies)
    with torch.no_grad(), tqdm(total=total, unit="tensor", disable=not progress,
                               desc=f"{structure_map.family} <- {reader.source.name}") as bar:
        for copy in copies:
            offset = 0
            for key, transform, rows in copy.pieces:
                src = reader.get(key)
                result.bytes += src.numel() * src.element_size()
                if transform == "transpose" and src.dim() == 2:
                    src = src.t()
                elif transform == "reshape":
                    src = src.reshape(copy.tensor.shape)
                dst = copy.tensor if rows is None else copy.tensor.narrow(0, offset, rows)
                dst.copy_(src)
                offset += rows or 0
                del src
                result.tensors += 1
                bar.update()
            result.filled.append(copy.target)
    return result


def _checkpoint_names(structure_map: StructureMap, reader: CheckpointReader) -> dict[str, str]:
    """Map name (a key with the first matching prefix stripped) -> checkpoint key."""
    names: dict[str, str] = {}
    for key in reader.keys():
        name = next((key[len(p):] for p in structure_map.prefixes if key.startswith(p)), key)
        if name in names:
            raise CheckpointError(f"{reader.describe(key)} holds both {names[name]!r} and {key!r}, the same name "
                                  f"{name!r} once the map's prefixes {list(structure_map.prefixes)} are stripped: "
                                  f"it cannot tell which to load. Remove one from the checkpoint.")
        names[name] = key
    return names


_PRESENT, _NONE, _NO_MODULE = "present", "none", "no module"


def _target(model: nn.Module, path: str) -> tuple[str, object]:
    module_path, _, attr = path.rpartition(".")
    try:
        module = model.get_submodule(module_path) if module_path else model
    except AttributeError:
        return _NO_MODULE, None
    value = getattr(module, attr, None)
    return (_PRESENT if isinstance(value, torch.Tensor) else _NONE), value


def _plan(model, structure_map: StructureMap, reader: CheckpointReader, routes: list[Route],
          names: dict[str, str]) -> tuple[list[_Copy], LoadResult]:
    result = LoadResult()
    unfilled, absent, shapes, wrong = [], [], [], []
    consumed: set[str] = set()
    groups: dict[int, list[tuple[Route, torch.Tensor, list[str | None]]]] = {}
    for route in routes:
        keys = [next((names[k] for k in s.keys if k in names), None) for s in route.sources]
        present = [k for k in keys if k is not None]
        status, value = _target(model, route.target)
        if status == _PRESENT:
            groups.setdefault(id(value), []).append((route, value, keys))
            continue
        consumed.update(present)
        if status == _NO_MODULE and route.head:
            result.skipped.extend(present)
        elif value is not None:
            wrong.append(f"{route.target} ({route.entry}) is a {type(value).__name__} in the model, not a tensor")
        elif present:
            why = (f"the model has no module {route.target.rpartition('.')[0]!r}" if status == _NO_MODULE
                   else "the model's attribute is None (a bias-free op?)")
            absent.append(f"{', '.join(present)} -> {route.target} ({route.entry}): {why}")

    copies: list[_Copy] = []
    targeted: set[int] = set()
    for routes_of_tensor in groups.values():
        # tied or shared tensors reached by several routes are filled once, by the first complete route
        route, tensor, keys = next((g for g in routes_of_tensor if None not in g[2]), routes_of_tensor[0])
        targeted.add(id(tensor))
        for _, _, other in routes_of_tensor:
            consumed.update(k for k in other if k is not None)
        if None in keys:
            for src, key in zip(route.sources, keys):
                if key is None:
                    unfilled.append(f"{route.target}: the map ({route.entry}) expects checkpoint key "
                                    f"{_spelled(src, structure_map)}, which {reader.source.name} does not hold")
            continue
        pieces = _pieces(route, tensor, keys, reader, shapes)
        if pieces is not None:
            copies.append(_Copy(route.target, tensor, pieces))

    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in targeted and id(tensor) not in seen:
            unfilled.append(f"{name}: no map entry fills it")
        seen.add(id(tensor))
    unused = []
    name_of = {key: name for name, key in names.items()}
    for key in reader.keys():
        if key in consumed:
            continue
        name = name_of[key]
        if structure_map.ignored(name) or structure_map.ignored(key):
            result.ignored.append(key)
        else:
            unused.append(f"{key} ({reader.describe(key)}, {list(reader.shape(key))})")

    kinds = [(unfilled, "model tensor(s) left unfilled"), (unused, "checkpoint key(s) that nothing uses"),
             (absent, "checkpoint key(s) whose target the model does not have (a bias-free op, or a missing "
                      "module)"), (shapes, "shape mismatch(es)"), (wrong, "map target(s) that are not tensors")]
    if any(items for items, _ in kinds):
        lines = [f"Checkpoint {reader.source} does not fit the model under the {structure_map.family!r} map "
                 f"({structure_map.origin}):"]
        for items, title in kinds:
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines += [f"    {item}" for item in items[:_LISTED]]
                if len(items) > _LISTED:
                    lines.append(f"    ... and {len(items) - _LISTED} more")
        lines.append("What to do: keys HF itself drops belong in the map's `ignore:`; a key the checkpoint lacks "
                     "or a tensor no entry fills means the map's paths or roles are wrong for this checkpoint; "
                     "shape mismatches mean config.json and the weights disagree, or a missing transform. "
                     "Nothing was copied. Map schema: docs/MAPS.md.")
        raise CheckpointError("\n".join(lines))
    return copies, result


def _spelled(source: Source, structure_map: StructureMap) -> str:
    text = " or ".join(repr(k) for k in source.keys)
    if not structure_map.prefixes:
        return text
    return f"{text} (each also tried with the prefix {' or '.join(repr(p) for p in structure_map.prefixes)})"


def _pieces(route: Route, tensor: torch.Tensor, keys: list[str], reader: CheckpointReader,
            shapes: list[str]) -> list[tuple[str, str | None, int | None]] | None:
    """The copy of one route, or None after recording why its shapes do not fit."""
    want = tuple(tensor.shape)
    stored = [tuple(reader.shape(k)) for k in keys]
    transforms = [s.transform for s in route.sources]
    placed = [s[::-1] if t == "transpose" and len(s) == 2 else s for s, t in zip(stored, transforms)]
    got = ", ".join(f"{k} {list(s)}" + (f" (transposed {list(p)})" if p != s else "")
                    for k, s, p in zip(keys, stored, placed))
    if len(keys) == 1:
        if transforms[0] == "reshape":
            if math.prod(stored[0]) == math.prod(want):
                return [(keys[0], "reshape", None)]
            shapes.append(f"{route.target} {list(want)} ({route.entry}) <- {got}: reshape needs "
                          f"{math.prod(want)} elements")
            return None
        if placed[0] == want:
            return [(keys[0], transforms[0], None)]
        shapes.append(f"{route.target} expects {list(want)} ({route.entry}), checkpoint has {got}")
        return None
    rows = [p[0] if p else 0 for p in placed]
    if want and all(len(p) == len(want) and p[1:] == want[1:] for p in placed) and sum(rows) == want[0]:
        return [(k, t, r) for k, t, r in zip(keys, transforms, rows)]
    shapes.append(f"{route.target} expects {list(want)} ({route.entry}) as rows of {len(keys)} pieces "
                  f"[*, {', '.join(map(str, want[1:]))}] summing to {want[0] if want else '?'}; checkpoint has {got}")
    return None


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def _check_device(copy: _Copy, device: torch.device):
    t = copy.tensor
    if not t.is_meta and not _same_device(t.device, device):
        raise DeviceError(f"{copy.target} is on {t.device} but load_into was asked to load onto {device}. "
                          f"Build the model on {device} (or on the 'meta' device) before loading.")


def _allocate(copy: _Copy, dtype: torch.dtype, device: torch.device):
    """A meta tensor gets memory on the device, staying the same Python object (so ties hold)."""
    t = copy.tensor
    if t.is_meta:
        real = torch.empty(t.shape, dtype=dtype if t.dtype.is_floating_point else t.dtype, device=device)
        if isinstance(t, nn.Parameter):
            real = nn.Parameter(real, requires_grad=t.requires_grad)
        torch.utils.swap_tensors(t, real)
