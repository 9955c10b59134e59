"""Precision comparison, layer by layer: eet_triton against transformers.

    table = eet_triton.compare("openai/clip-vit-base-patch32", dtype="fp16")
    print(table)              # per layer: ours vs transformers fp32, beside transformers fp16 vs fp32
    table.worst()             # the row with the largest relative error
    table.to_dicts()          # the rows as plain dicts

    from eet_triton.tools import compare_op
    compare_op(EETSelfAttention.from_torch(hf_attn, dtype=torch.float16), hf_attn, x, attention_mask=mask)

Each row holds three statistics of a tensor against the transformers float32 reference: max abs
error, relative error ||a - b|| / ||b||, and cosine similarity, for eet_triton in the chosen dtype
and, beside them, for transformers itself run in that dtype: what the low precision alone costs.
Positions that are padding (attention_mask 0) are left out: their values are never read.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import html
import inspect
import math
import os

import torch
from torch import nn

from eet_triton.tools.hf import as_torch_dtype, cast_inputs, default_device, dtype_name, load_hf, make_inputs

# Output fields that hold per-layer tuples or caches, not results; per-layer states get rows of their own.
_NOT_RESULTS = {"hidden_states", "attentions", "encoder_hidden_states", "decoder_hidden_states",
                "encoder_attentions", "decoder_attentions", "cross_attentions", "past_key_values"}


@dataclasses.dataclass(frozen=True)
class Stats:
    """Errors of one tensor against the float32 reference."""

    max_abs: float
    rel_err: float
    cosine: float


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared tensor. ours: eet_triton vs reference; hf: transformers in the same dtype vs
    reference (None when the dtype is the reference's own). note says why a row has no numbers."""

    name: str
    shape: tuple[int, ...]
    ours: Stats | None
    hf: Stats | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Our relative error over transformers' in the same dtype (None where that is 0 or absent)."""
        if self.ours is None or self.hf is None or not self.hf.rel_err > 0:
            return None
        return self.ours.rel_err / self.hf.rel_err

    def to_dict(self) -> dict:
        ours, hf = self.ours or Stats(None, None, None), self.hf or Stats(None, None, None)
        return {"name": self.name, "shape": list(self.shape), "max_abs": ours.max_abs, "rel_err": ours.rel_err,
                "cosine": ours.cosine, "hf_max_abs": hf.max_abs, "hf_rel_err": hf.rel_err, "hf_cosine": hf.cosine,
                "ratio": self.ratio, "note": self.note}


def error_stats(out: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor | None = None) -> Stats:
    """max abs error, ||out - ref|| / ||ref||, cosine(out, ref), in float64, over the positions
    where keep (bool, out's leading dims) is true. NaN in out gives NaN statistics."""
    a, b = out.detach().double(), ref.detach().to(out.device).double()
    if keep is not None:
        keep = keep.to(a.device).bool()
        a, b = a[keep], b[keep]
    if a.numel() == 0:
        return Stats(0.0, 0.0, 1.0)
    diff_norm, ref_norm, out_norm = (a - b).norm().item(), b.norm().item(), a.norm().item()
    if ref_norm > 0:
        rel = diff_norm / ref_norm
    else:
        rel = 0.0 if diff_norm == 0 else math.inf
    if out_norm > 0 and ref_norm > 0:
        cosine = (a * b).sum().item() / (out_norm * ref_norm)
    else:
        cosine = 1.0 if out_norm == ref_norm else 0.0
    return Stats((a - b).abs().max().item(), rel, cosine)


def _fmt(x: float | None, spec: str) -> str:
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    return format(x, spec)


class ComparisonTable:
    """Rows of a comparison, as data and as a table.

    rows: list[Row]; dtype: the compared dtype ("fp16"); title: what was compared. Iterating gives
    the rows; table["layer 3"] finds one by name. Prints as a text table (str), markdown and HTML
    (notebooks).
    """

    _HEAD = ("layer", "shape", "max abs", "rel err", "cosine")

    def __init__(self, rows: list[Row], *, dtype: str, title: str, notes: tuple[str, ...] = ()):
        self.rows = list(rows)
        self.dtype = dtype
        self.title = title
        self.notes = tuple(notes)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | str) -> Row:
        if isinstance(key, int):
            return self.rows[key]
        for row in self.rows:
            if row.name == key:
                return row
        raise KeyError(f"no row named {key!r}; rows: {', '.join(r.name for r in self.rows)}")

    def to_dicts(self) -> list[dict]:
        return [row.to_dict() for row in self.rows]

    def worst(self) -> Row | None:
        """The row with the largest relative error of ours (NaN counts as largest); None if no row has numbers."""
        measured = [r for r in self.rows if r.ours is not None]
        if not measured:
            return None
        return max(measured, key=lambda r: math.inf if math.isnan(r.ours.rel_err) else r.ours.rel_err)

    def all_finite(self) -> bool:
        return all(math.isfinite(r.ours.max_abs) for r in self.rows if r.ours is not None)

    def summary(self) -> str:
        """A few lines: how many tensors, the worst one, and how it sits against transformers."""
        worst = self.worst()
        if worst is None:
            return f"{self.title}: nothing compared"
        lines = [f"{self.title}: {sum(r.ours is not None for r in self.rows)} tensors compared"
                 f"{'' if self.all_finite() else ', SOME NOT FINITE'}"]
        line = (f"  worst: {worst.name}  rel err {_fmt(worst.ours.rel_err, '.2e')}  max abs "
                f"{_fmt(worst.ours.max_abs, '.2e')}  cosine {_fmt(worst.ours.cosine, '.8f')}")
        if worst.hf is not None:
            line += f"  (transformers {self.dtype}: rel err {_fmt(worst.hf.rel_err, '.2e')})"
        lines.append(line)
        ratios = [r.ratio for r in self.rows if r.ratio is not None]
        if ratios:
            lines.append(f"  ours / transformers-{self.dtype} relative error: max {max(ratios):.2f}x, "
                         f"median {sorted(ratios)[len(ratios) // 2]:.2f}x")
        return "\n".join(lines)

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        has_hf = any(r.hf is not None for r in self.rows)
        head = list(self._HEAD)
        if has_hf:
            head += [f"HF {self.dtype} max abs", f"HF {self.dtype} rel err", f"HF {self.dtype} cosine", "rel/HF"]
        body = []
        for r in self.rows:
            ours = r.ours or Stats(None, None, None)
            cells = [r.name, "x".join(map(str, r.shape)), _fmt(ours.max_abs, ".2e"), _fmt(ours.rel_err, ".2e"),
                     _fmt(ours.cosine, ".8f")]
            if has_hf:
                hf = r.hf or Stats(None, None, None)
                cells += [_fmt(hf.max_abs, ".2e"), _fmt(hf.rel_err, ".2e"), _fmt(hf.cosine, ".8f"),
                          _fmt(r.ratio, ".2f")]
            if r.note:
                cells[0] += f" ({r.note})"
            body.append(cells)
        return head, body

    def __str__(self) -> str:
        head, body = self._cells()
        widths = [max(len(c) for c in col) for col in zip(head, *body)]
        lines = [self.title, "  ".join(h.ljust(w) for h, w in zip(head, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
                  for cells in body]
        return "\n".join(lines + list(self.notes))

    def __repr__(self) -> str:
        return f"<ComparisonTable {self.title!r}: {len(self.rows)} rows>"

    def _repr_markdown_(self) -> str:
        head, body = self._cells()
        lines = [f"**{self.title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join(" --- " if i < 2 else " ---: " for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines + [""] + [f"_{n}_" for n in self.notes])

    def _repr_html_(self) -> str:
        head, body = self._cells()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
        notes = "".join(f"<p><i>{html.escape(n)}</i></p>" for n in self.notes)
        return (f"<p><b>{html.escape(self.title)}</b></p><table><thead><tr>{th}</tr></thead>"
                f"<tbody>{rows}</tbody></table>{notes}")


# ---- op level -----------------------------------------------------------------------------------

def _first_tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "to_tuple"):
        value = value.to_tuple()
    for item in value if isinstance(value, (tuple, list)) else ():
        if isinstance(item, torch.Tensor):
            return item
    raise TypeError(f"expected a tensor or a tuple starting with one, got {type(value).__name__}")


def _placement(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    first = next(module.parameters(), None)
    if first is None:
        raise ValueError(f"{type(module).__name__} has no parameters to tell its dtype and device")
    return first.dtype, first.device


def _additive_mask(mask: torch.Tensor, q_len: int, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """HF's 2-D 1/0 key mask as the 4-D additive mask [B, 1, q_len, k_len] its attention layers take."""
    visible = mask.bool()[:, None, :].expand(-1, q_len, -1)
    if causal:
        k_len = mask.shape[1]
        i = torch.arange(q_len, device=mask.device)[:, None]
        j = torch.arange(k_len, device=mask.device)[None, :]
        visible = visible & (j <= i + (k_len - q_len))
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(visible, zero, torch.finfo(dtype).min)[:, None]


def _keep_rows(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """mask as bool when t is per token ([batch, seq, ...] with the mask's [batch, seq]), else None
    (nothing left out: a pooled [batch, width] tensor keeps every row)."""
    if mask is None or t.dim() < 3 or tuple(t.shape[:2]) != tuple(mask.shape):
        return None
    return mask.bool()


def compare_op(eet_op: nn.Module, hf_module: nn.Module, *inputs, hf_kwargs: dict | None = None,
               **kwargs) -> ComparisonTable:
    """One eet_triton op against the HF submodule it lifts, on the given inputs.

    Runs eet_op(*inputs, **kwargs) in the op's dtype, and copies of hf_module in float32 (the
    reference) and in the op's dtype on the same inputs (floating inputs cast to each). A 2-D
    attention_mask [batch, seq] (1 = token, 0 = padding) goes to the op as is and to HF as the 4-D
    additive mask its attention layers take (causal when the op is), and padding rows are left out
    of the statistics. hf_kwargs are passed to the HF module only (they win over the above).
    Returns a one-row ComparisonTable (the first output tensor of each).
    """
    from eet_triton.ops import EETSelfMaskedAttention

    dtype, device = _placement(eet_op)
    mask = kwargs.get("attention_mask")
    mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def call(module, run_dtype):
        args = [a.to(device=device, dtype=run_dtype) if isinstance(a, torch.Tensor) and a.is_floating_point()
                else a for a in inputs]
        kw = cast_inputs(kwargs, run_dtype, device)
        if module is not eet_op:
            if mask is not None and "attention_mask" in inspect.signature(module.forward).parameters:
                q_len = _first_tensor(args).shape[1] if args else mask.shape[1]
                causal = isinstance(eet_op, EETSelfMaskedAttention)
                kw["attention_mask"] = _additive_mask(mask.to(device), q_len, causal, run_dtype)
            elif mask is not None:
                kw.pop("attention_mask")
            kw.update(cast_inputs(hf_kwargs or {}, run_dtype, device))
        with torch.no_grad(), _true_fp32():
            return _first_tensor(module(*args, **kw))

    ours = call(eet_op, dtype)
    ref = call(copy.deepcopy(hf_module).to(device=device, dtype=torch.float32).eval(), torch.float32)
    base = None
    if dtype != torch.float32:
        base = call(copy.deepcopy(hf_module).to(device=device, dtype=dtype).eval(), dtype)
    keep = _keep_rows(ref, mask)
    if tuple(ours.shape) != tuple(ref.shape):
        row = Row("output", tuple(ref.shape), None,
                  note=f"shape {tuple(ours.shape)} != transformers {tuple(ref.shape)}")
    else:
        row = Row("output", tuple(ref.shape), error_stats(ours, ref, keep),
                  None if base is None else error_stats(base, ref, keep))
    title = (f"{type(eet_op).__name__} {dtype_name(dtype)} vs {type(hf_module).__name__} fp32 "
             f"({device.type}{', padding excluded' if keep is not None else ''})")
    return ComparisonTable([row], dtype=dtype_name(dtype), title=title)


# ---- model level ----------------------------------------------------------------------------------

def _flat_outputs(out, prefix: str = "") -> dict[str, torch.Tensor]:
    """The result tensors of a transformers output, nested outputs prefixed ("text.pooler_output")."""
    if isinstance(out, torch.Tensor):
        return {prefix + "output": out}
    items = out.items() if hasattr(out, "items") else enumerate(out)
    flat = {}
    for key, value in items:
        key = str(key)
        if key in _NOT_RESULTS:
            continue
        if isinstance(value, torch.Tensor):
            flat[prefix + key] = value
        elif hasattr(value, "items"):
            flat.update(_flat_outputs(value, prefix + key.removesuffix("_model_output") + "."))
    return flat


def _hf_towers(out) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per-layer hidden states by tower: "" (one stack), "text"/"vision" (CLIP), "encoder"/"decoder"."""
    towers = {}
    if getattr(out, "hidden_states", None) is not None:
        towers[""] = tuple(out.hidden_states)
    for key in ("encoder_hidden_states", "decoder_hidden_states"):
        if isinstance(getattr(out, key, None), tuple):
            towers[key.split("_")[0]] = out[key]
    for key, value in (out.items() if hasattr(out, "items") else ()):
        if hasattr(value, "items") and value.get("hidden_states") is not None:
            towers[key.removesuffix("_model_output")] = tuple(value["hidden_states"])
    return towers


def _layer_stacks(model: nn.Module) -> dict[str, nn.ModuleList]:
    """The outermost ModuleLists of a model, by their path: its stacks of layers."""
    stacks = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and not any(name.startswith(s + ".") for s in stacks):
            stacks[name] = module
    return stacks


def _match_stacks(towers: dict[str, tuple], stacks: dict[str, nn.ModuleList]) -> dict[str, nn.ModuleList]:
    """Which of our layer stacks runs which transformers tower: the one stack when there is one
    tower, else the one whose path names the tower ("text" in "text.layers")."""
    if len(towers) == 1 and len(stacks) == 1:
        return {next(iter(towers)): next(iter(stacks.values()))}
    matched = {}
    for tower in towers:
        named = [stack for path, stack in stacks.items() if tower and tower in path]
        if len(named) == 1:
            matched[tower] = named[0]
    return matched


class _Capture:
    """Forward hooks on a layer stack: its input (the embeddings), then each layer's output in call
    order, so a layer run several times (ALBERT shares one) gives one state per run."""

    def __init__(self, stack: nn.ModuleList):
        self.states: list[torch.Tensor] = []
        self.handles = [stack[0].register_forward_pre_hook(self._input, with_kwargs=True)]
        self.handles += [layer.register_forward_hook(self._output) for layer in stack]

    def _input(self, module, args, kwargs):
        if not self.states:
            first = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()), None))
            self.states.append(_first_tensor(first).detach().clone())

    def _output(self, module, args, output):
        self.states.append(_first_tensor(output).detach().clone())

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _tower_mask(name: str, mask: torch.Tensor | None, encoder_decoder: bool) -> torch.Tensor | None:
    """The padding mask that applies to a tensor of this tower/output (token towers only)."""
    if mask is None or any(word in name for word in ("vision", "image")):
        return None
    if encoder_decoder and not name.startswith("encoder"):
        return None
    return mask


def _state_name(tower: str, index: int) -> str:
    what = "embeddings" if index == 0 else f"layer {index - 1}"
    return f"{tower}.{what}" if tower else what


def _compare_rows(name, ours, ref, base, mask) -> Row:
    if ours is None:
        return Row(name, tuple(ref.shape), None, note="not captured from eet_triton")
    if tuple(ours.shape) != tuple(ref.shape):
        if ours.numel() != ref.numel():
            return Row(name, tuple(ref.shape), None, note=f"eet_triton shape {tuple(ours.shape)}")
        ours = ours.reshape(ref.shape)
    keep = _keep_rows(ref, mask)
    return Row(name, tuple(ref.shape), error_stats(ours, ref, keep),
               None if base is None else error_stats(base, ref, keep))


@contextlib.contextmanager
def _true_fp32():
    """No TF32 while the reference runs: cuDNN convolutions (CLIP's patch embedding) use it by
    default on Ampere and later, and a 10-bit mantissa would make the fp32 reference no reference."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _run_hf(model, inputs) -> object:
    with torch.no_grad(), _true_fp32():
        return model(**cast_inputs(inputs, _placement(model)[0]), output_hidden_states=True)


def _load_ours(path, device, dtype):
    from eet_triton.api import load

    return load(path, device=device, dtype=dtype_name(dtype), use_cuda_graph=False)


def compare(name_or_path: str | os.PathLike, *, dtype: str | torch.dtype = "fp16", device=None, batch: int = 2,
            seq: int = 16, inputs: dict | None = None, hf_model: nn.Module | None = None) -> ComparisonTable:
    """eet_triton against transformers, layer by layer, for one checkpoint.

    Loads the checkpoint (a folder, or a hub id found in the local cache) as its transformers class
    in float32 (the reference; or uses `hf_model`, a transformers model with the same weights) and
    in `dtype`, and as an eet_triton model in `dtype` with CUDA graphs off; runs all three on the
    same inputs (`inputs`, a dict of the model's keyword inputs, or random valid ones: `batch` rows
    of `seq` tokens, the last row padded, images of the model's size); and compares, per tower, the
    embeddings, each layer's output and every output field (last_hidden_state, pooler_output,
    text_embeds, logits_per_image, ...). Padding positions are left out.
    device: None -> the GPU when there is one, else the CPU (interpreted kernels: tiny models only).
    """
    from eet_triton.mapping import resolve_checkpoint

    dtype, device = as_torch_dtype(dtype), default_device(device)
    path = resolve_checkpoint(name_or_path)
    ours = _load_ours(path, device, dtype)  # first: an architecture eet_triton lacks fails before transformers loads
    if hf_model is None:
        ref_model = load_hf(path, torch.float32, device)
    else:
        ref_model = copy.deepcopy(hf_model).to(device=device, dtype=torch.float32).eval()
    if inputs is None:
        inputs = make_inputs(ref_model, batch, seq, device)
    else:
        inputs = cast_inputs(inputs, torch.float32, device)
    encoder_decoder = bool(getattr(ref_model.config, "is_encoder_decoder", False))
    arch = type(ref_model).__name__
    ref_out = _run_hf(ref_model, inputs)
    base_out = None
    if dtype != torch.float32:
        base_out = _run_hf(ref_model.to(dtype), inputs)  # ref_model is our own copy: cast in place
    del ref_model

    towers = _hf_towers(ref_out)
    captures = {tower: _Capture(stack) for tower, stack in _match_stacks(towers, _layer_stacks(ours)).items()}
    try:
        with torch.no_grad():
            ours_out = ours(**cast_inputs(inputs, dtype))
    finally:
        for capture in captures.values():
            capture.remove()

    mask = inputs.get("attention_mask")
    mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    base_towers = _hf_towers(base_out) if base_out is not None else {}
    ref_flat, ours_flat = _flat_outputs(ref_out), _flat_outputs(ours_out)
    base_flat = _flat_outputs(base_out) if base_out is not None else {}
    rows, notes = [], []

    def output_rows(names):
        for name in names:
            rows.append(_compare_rows(name, ours_flat.get(name), ref_flat[name], base_flat.get(name),
                                      _tower_mask(name, mask, encoder_decoder)))

    for tower, states in towers.items():
        tower_mask = _tower_mask(tower, mask, encoder_decoder)
        ours_states = captures[tower].states if tower in captures else []
        if tower in captures and len(ours_states) != len(states):
            notes.append(f"{tower or 'layers'}: eet_triton ran {len(ours_states) - 1} layers, transformers "
                         f"{len(states) - 1}; per-layer rows left out")
            ours_states = []
        for i, ref in enumerate(states):
            base = base_towers[tower][i] if tower in base_towers else None
            ours_state = ours_states[i] if ours_states else None
            rows.append(_compare_rows(_state_name(tower, i), ours_state, ref, base, tower_mask))
        if tower:  # a tower's own outputs (text.pooler_output) next to its layers
            output_rows([name for name in ref_flat if name.startswith(tower + ".")])
    output_rows([name for name in ref_flat if not any(name.startswith(t + ".") for t in towers if t)])

    shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in inputs.items() if isinstance(v, torch.Tensor))
    title = f"eet_triton {dtype_name(dtype)} vs transformers fp32: {arch} from {name_or_path} ({shapes}; {device.type})"
    if base_out is not None:
        notes.append(f"rel err = ||ours - ref|| / ||ref||; HF {dtype_name(dtype)} = transformers itself in "
                     f"{dtype_name(dtype)}; rel/HF = our rel err over its")
    if mask is not None:
        notes.append("padding positions (attention_mask 0) are left out")
    if not captures and towers:
        notes.append("per-layer states: no layer stack of the eet_triton model matched transformers' layers")
    return ComparisonTable(rows, dtype=dtype_name(dtype), title=title, notes=tuple(notes))
