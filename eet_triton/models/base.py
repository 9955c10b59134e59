"""What every loaded model shares: input checks that fail before any kernel runs, the device
guard, the optional CUDA-graph runner, and turning the forward's flat tensors into the output
class the transformers model returns."""

from __future__ import annotations

import contextlib

import torch

from eet_triton.errors import DeviceError, DTypeError, SequenceTooLongError, ShapeError
from eet_triton.kernels._common import FLOAT_DTYPES
from eet_triton.runtime.cuda_graph import GraphRunner

ID_DTYPES = (torch.int32, torch.int64)


def device_guard(device: torch.device):
    """Make `device` current while kernels launch: Triton launches on the current CUDA device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _same_device(t: torch.Tensor, device: torch.device) -> bool:
    if t.device.type != device.type:
        return False
    return device.type != "cuda" or t.device.index == device.index


def _check_device(owner: str, name: str, t: torch.Tensor, device: torch.device) -> None:
    if not _same_device(t, device):
        raise DeviceError(f"{owner}: {name} is on {t.device}, the model on {device}; move it with .to('{device}')")


def check_text_inputs(owner: str, spec, device: torch.device, input_ids, attention_mask=None, token_type_ids=None,
                      position_ids=None) -> dict[str, torch.Tensor | None]:
    """Validated text inputs: input_ids [B, L] int32/int64; attention_mask [B, L] (any dtype, 1 =
    attend) or None; token_type_ids [B, L] int or None; position_ids [B, L], [1, L] or [L] int or
    None. All on the model's device. Raises ShapeError, DTypeError, DeviceError, SequenceTooLongError."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{owner}: input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ShapeError(f"{owner}: input_ids must be [batch, seq_len], got shape {list(input_ids.shape)}; "
                         "add a batch dimension with input_ids[None]")
    if input_ids.dtype not in ID_DTYPES:
        raise DTypeError(f"{owner}: input_ids must be int64 or int32 token ids, got {input_ids.dtype}; "
                         "pass the tokenizer's input_ids (return_tensors='pt')")
    _check_device(owner, "input_ids", input_ids, device)
    batch, length = input_ids.shape
    limit = spec.max_sequence
    if limit is not None and length > limit:
        raise SequenceTooLongError(f"{owner}: sequence length {length} exceeds the model's {limit} positions "
                                   f"(max_position_embeddings); truncate the input (tokenizer truncation=True, "
                                   f"max_length={limit})")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (batch, length):
            got = list(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
            raise ShapeError(f"{owner}: attention_mask must be [batch, seq_len] = [{batch}, {length}] like "
                             f"input_ids, got {got}")
        if attention_mask.is_complex():
            raise DTypeError(f"{owner}: attention_mask must be 1/0 (bool, int or float), got {attention_mask.dtype}")
        _check_device(owner, "attention_mask", attention_mask, device)
    if token_type_ids is not None:
        if not spec.type_vocab_size:
            raise ValueError(f"{owner}: token_type_ids given, but the model has no token type embeddings; drop them")
        _check_ids(owner, "token_type_ids", token_type_ids, ((batch, length),), device)
    if position_ids is not None:
        _check_ids(owner, "position_ids", position_ids, ((batch, length), (1, length), (length,)), device)
        if position_ids.dim() == 2 and position_ids.shape[0] == 1 and batch != 1:
            position_ids = position_ids[0]
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                position_ids=position_ids)


def _check_ids(owner: str, name: str, t, shapes, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) not in shapes:
        raise ShapeError(f"{owner}: {name} must be {' or '.join(str(list(s)) for s in shapes)} to match "
                         f"input_ids, got {list(t.shape)}")
    if t.dtype not in ID_DTYPES:
        raise DTypeError(f"{owner}: {name} must be int64 or int32, got {t.dtype}")
    _check_device(owner, name, t, device)


def check_pixel_values(owner: str, spec, device: torch.device, pixel_values) -> torch.Tensor:
    """pixel_values [B, C, H, W] fp32/fp16/bf16 of the model's image size, on the model's device."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"{owner}: pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    size = spec.image_size if isinstance(spec.image_size, (tuple, list)) else (spec.image_size, spec.image_size)
    want = [spec.num_channels, *size]
    if pixel_values.dim() != 4 or list(pixel_values.shape[1:]) != want:
        raise ShapeError(f"{owner}: pixel_values must be [batch, {', '.join(map(str, want))}], got "
                         f"{list(pixel_values.shape)}; prepare images with the model's image processor")
    if pixel_values.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{owner}: pixel_values must be float (fp32, fp16 or bf16), got {pixel_values.dtype}; "
                         "pass the image processor's pixel_values")
    _check_device(owner, "pixel_values", pixel_values, device)
    return pixel_values


class EETModel:
    """Mixin of every model `eet_triton.load` returns (with an nn.Module base).

    A subclass gives `_check(**inputs) -> dict` (host-side checks only), `_compute(**inputs) ->
    dict[str, Tensor]` (the forward: kernels and small torch glue, no host sync, so it can be
    captured in a CUDA graph) and `_output(flat) -> ModelOutput`.
    """

    _graphs: GraphRunner | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def use_cuda_graphs(self, enabled: bool = True, *, max_graphs: int = 8) -> None:
        """Replay the forward as CUDA graphs, one per input signature (shapes, dtypes, which inputs
        are given), at most `max_graphs` kept. enabled=False goes back to eager launches."""
        if enabled and self.device.type != "cuda":
            raise DeviceError(f"{type(self).__name__}: CUDA graphs need the model on a GPU; it is on {self.device}")
        self._graphs = GraphRunner(self._compute, max_graphs=max_graphs) if enabled else None

    @property
    def cuda_graphs(self) -> bool:
        return self._graphs is not None

    def _run(self, **inputs):
        inputs = self._check(**inputs)
        with torch.no_grad(), device_guard(self.device):
            flat = (self._graphs or self._compute)(**inputs)
        return self._output(flat)

    def capture(self, batch_sizes=(1,), seq_lens=None, **example_inputs) -> None:
        """Capture CUDA graphs ahead of the first calls, one per (batch size, sequence length).

        Text inputs are made as a tokenizer makes them (int64 input_ids and attention_mask, and
        token_type_ids when the model has a type table), images as an image processor does (fp32).
        Inputs passed by name replace those defaults (their values do not matter, only shapes,
        dtypes and which are given; pass name=None to leave one out). Without CUDA graphs enabled
        this does nothing.
        """
        if self._graphs is None:
            return
        for batch in batch_sizes:
            for length in (seq_lens or (None,)):
                inputs = {**self._example_inputs(batch, length), **example_inputs}
                inputs = self._check(**inputs)
                with torch.no_grad(), device_guard(self.device):
                    self._graphs.capture(**inputs)

    def _example_text(self, spec, batch: int, length: int | None) -> dict:
        if length is None:
            raise ValueError(f"{type(self).__name__}.capture: give seq_lens for a text model")
        device = self.device
        inputs = dict(input_ids=torch.zeros(batch, length, dtype=torch.int64, device=device),
                      attention_mask=torch.ones(batch, length, dtype=torch.int64, device=device))
        if spec.type_vocab_size:
            inputs["token_type_ids"] = torch.zeros(batch, length, dtype=torch.int64, device=device)
        return inputs

    def _example_image(self, spec, batch: int) -> dict:
        size = spec.image_size if isinstance(spec.image_size, (tuple, list)) else (spec.image_size,) * 2
        return dict(pixel_values=torch.zeros(batch, spec.num_channels, *size, device=self.device))
