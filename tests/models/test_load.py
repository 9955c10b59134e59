"""eet_triton.load: choosing the map and the class, devices and dtypes, and every bad input or
checkpoint raising its EETError subclass with a message that says what to do."""

from __future__ import annotations

import gc
import shutil
import tempfile
import weakref

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    BertForQuestionAnswering,
    BertModel,
    CLIPTextModel,
    GPT2Config,
    GPT2Model,
    RobertaModel,
    ViTModel,
)

import eet_triton
import eet_triton.api
from _tiny_models import (
    bert_config,
    checkpoint,
    clip_text_config,
    image_inputs,
    roberta_config,
    text_inputs,
    vit_config,
)
from eet_triton.errors import (
    CheckpointError,
    DeviceError,
    DTypeError,
    MappingError,
    SequenceTooLongError,
    ShapeError,
    UnsupportedModelError,
)


@pytest.fixture(scope="module")
def device():
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def bert(device):
    return eet_triton.load(checkpoint(BertModel, bert_config()), device=device, dtype="fp32")


def copy_of(folder) -> str:
    return shutil.copytree(folder, tempfile.mkdtemp(prefix="eet_broken_"), dirs_exist_ok=True)


def test_spec_and_placement(bert, device):
    spec = bert.spec
    assert isinstance(spec, eet_triton.ModelSpec)
    assert (spec.architecture, spec.family, spec.hidden_size, spec.num_heads, spec.head_dim) == \
        ("BertModel", "bert", 32, 2, 16)
    assert (spec.num_layers, spec.ffn_size, spec.norm_position, spec.max_sequence) == (2, 37, "post", 40)
    assert spec.embedding_norm and spec.pooler and not spec.final_norm
    assert all(p.device.type == device and p.dtype == torch.float32 for p in bert.parameters())
    assert not bert.training


@pytest.mark.parametrize("dtype,want", [("fp16", torch.float16), ("bf16", torch.bfloat16),
                                        (torch.float32, torch.float32)])
def test_dtype_names(dtype, want, device):
    model = eet_triton.load(checkpoint(BertModel, bert_config()), device=device, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {want}


def test_bad_dtype_and_device(device):
    folder = checkpoint(BertModel, bert_config())
    with pytest.raises(DTypeError, match="fp16"):
        eet_triton.load(folder, device=device, dtype="fp8")
    with pytest.raises(DTypeError):
        eet_triton.load(folder, device=device, dtype=torch.int32)
    with pytest.raises(DeviceError, match="cuda"):
        eet_triton.load(folder, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            eet_triton.load(folder, device=0)
    else:
        with pytest.raises(DeviceError, match="CUDA device"):
            eet_triton.load(folder, device=torch.cuda.device_count())


def test_user_map_by_name_and_malformed_map(tmp_path, device):
    folder = checkpoint(BertModel, bert_config())
    assert eet_triton.load(folder, device=device, dtype="fp32", mapping="bert").spec.family == "bert"
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: bert\nlayers:\n  path: encoder.layer\n")
    with pytest.raises(MappingError, match=r"bad.yaml"):
        eet_triton.load(folder, device=device, dtype="fp32", mapping=bad)


def test_unsupported_architecture(device):
    folder = checkpoint(BertForQuestionAnswering, bert_config())
    with pytest.raises(UnsupportedModelError, match=r"(?s)BertForQuestionAnswering.*BertForMaskedLM.*MAPS\.md"):
        eet_triton.load(folder, device=device, dtype="fp32")


def test_unsupported_model_type(device):
    folder = checkpoint(GPT2Model, GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=99, n_positions=16))
    with pytest.raises(UnsupportedModelError, match=r"(?s)'gpt2'.*CLIPModel.*MAPS\.md"):
        eet_triton.load(folder, device=device, dtype="fp32")


def test_checkpoint_missing_a_tensor(device):
    folder = copy_of(checkpoint(BertModel, bert_config()))
    weights = load_file(f"{folder}/model.safetensors")
    del weights["encoder.layer.1.attention.self.key.weight"]
    save_file(weights, f"{folder}/model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError,
                       match=r"layers\.1\.attention\.qkv_weight.*encoder\.layer\.1\.attention\.self\.key"):
        eet_triton.load(folder, device=device, dtype="fp32")


def test_truncated_safetensors(device):
    folder = copy_of(checkpoint(BertModel, bert_config()))
    path = f"{folder}/model.safetensors"
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        eet_triton.load(folder, device=device, dtype="fp32")


def test_failed_load_frees_the_skeleton(monkeypatch, device):
    """A load that fails after the skeleton is built leaves nothing of it alive (on a GPU: its
    memory goes back to the allocator, not kept alive by the traceback)."""
    built = []
    real_build = eet_triton.api.build_model

    def build(spec, **kwargs):
        model = real_build(spec, **kwargs)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(eet_triton.api, "build_model", build)
    folder = copy_of(checkpoint(BertModel, bert_config()))
    weights = load_file(f"{folder}/model.safetensors")
    weights["pooler.dense.weight"] = weights["pooler.dense.weight"][:, :7].contiguous()
    save_file(weights, f"{folder}/model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="pooler.weight"):
        eet_triton.load(folder, device=device, dtype="fp32")
    gc.collect()
    assert built and built[0]() is None


def test_sequence_too_long(device):
    bert = eet_triton.load(checkpoint(BertModel, bert_config()), device=device, dtype="fp32")
    with pytest.raises(SequenceTooLongError, match="41.*40"):
        bert(torch.ones(1, 41, dtype=torch.int64, device=device))
    # RoBERTa's positions start after the padding id: 42 rows hold 40 tokens
    roberta = eet_triton.load(checkpoint(RobertaModel, roberta_config()), device=device, dtype="fp32")
    assert roberta.spec.max_sequence == 40
    with pytest.raises(SequenceTooLongError, match="41"):
        roberta(torch.full((1, 41), 5, device=device))
    clip = eet_triton.load(checkpoint(CLIPTextModel, clip_text_config()), device=device, dtype="fp32")
    with pytest.raises(SequenceTooLongError, match="21.*20"):
        clip(torch.full((1, 21), 5, device=device))


def test_bad_text_inputs(bert, device):
    ids = text_inputs(3, 7, pad_id=0, padded=True)["input_ids"].to(device)
    with pytest.raises(DTypeError, match="input_ids"):
        bert(ids.float())
    with pytest.raises(ShapeError, match="input_ids"):
        bert(ids[0])
    with pytest.raises(ShapeError, match=r"attention_mask.*\[3, 7\]"):
        bert(ids, attention_mask=torch.ones(2, 7, device=device))
    with pytest.raises(ShapeError, match="token_type_ids"):
        bert(ids, token_type_ids=torch.zeros(2, 7, dtype=torch.int64, device=device))
    with pytest.raises(DTypeError, match="token_type_ids"):
        bert(ids, token_type_ids=torch.zeros(3, 7, device=device))
    with pytest.raises(DeviceError, match="input_ids"):
        bert(ids.to("meta"))
    with pytest.raises(DeviceError, match="attention_mask"):
        bert(ids, attention_mask=torch.ones(3, 7, device="meta"))
    with pytest.raises(TypeError, match="input_ids"):
        bert([[1, 2, 3]])


def test_token_types_on_a_model_without_them(device):
    clip = eet_triton.load(checkpoint(CLIPTextModel, clip_text_config()), device=device, dtype="fp32")
    ids = torch.full((1, 5), 5, device=device)
    with pytest.raises(ValueError, match="token type"):
        clip(ids, token_type_ids=torch.zeros_like(ids))


def test_bad_pixel_values(device):
    vit = eet_triton.load(checkpoint(ViTModel, vit_config()), device=device, dtype="fp32")
    pixels = image_inputs(2)["pixel_values"].to(device)
    with pytest.raises(DTypeError, match="pixel_values"):
        vit(pixels.to(torch.int64))
    with pytest.raises(ShapeError, match=r"pixel_values.*\[batch, 3, 32, 32\]"):
        vit(pixels[:, :, :16])
    with pytest.raises(DeviceError, match="pixel_values"):
        vit(pixels.to("meta"))


def test_cuda_graphs_need_a_gpu(bert):
    if bert.device.type == "cuda":
        pytest.skip("the model is on a GPU")
    assert not bert.cuda_graphs
    with pytest.raises(DeviceError, match="GPU"):
        bert.use_cuda_graphs()
    bert.capture(batch_sizes=(1,), seq_lens=(7,))
