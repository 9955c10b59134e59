"""Checkpoint resolution (local folder, offline HF cache) and the tensor-at-a-time reader."""

import json
import socket
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from eet_triton.errors import CheckpointError
from eet_triton.mapping import CheckpointReader, read_config, resolve_checkpoint

SHA = "0123456789abcdef0123456789abcdef01234567"


def random_state():
    """Odd shapes, several dtypes, a scalar; fresh values each run (the conftest seeds torch)."""
    return {
        "a.weight": torch.randn(7, 13),
        "a.bias": torch.randn(7),
        "b.table": torch.randn(3, 5, 11).to(torch.float16),
        "c.scale": torch.randn(()).to(torch.bfloat16),
        "d.ids": torch.randint(0, 1000, (1, 9)),
    }


def write_checkpoint(folder, state=None, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "toy"}))
    state = state if state is not None else random_state()
    save_file(state, folder / "model.safetensors")
    return state


def assert_reads(reader, state):
    assert sorted(reader.keys()) == sorted(state)
    assert len(reader) == len(state)
    for key, ref in state.items():
        assert key in reader
        assert reader.shape(key) == ref.shape
        assert reader.dtype(key) == ref.dtype
        got = reader.get(key)
        assert got.dtype == ref.dtype and got.device.type == "cpu"
        assert torch.equal(got, ref), key


def fake_cache(root, repo_id, files=True):
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / SHA
    if files:
        write_checkpoint(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SHA)
    return snapshot


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("eet_triton tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_resolve_local_folder(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    assert resolve_checkpoint(tmp_path / "ckpt") == (tmp_path / "ckpt").resolve()
    assert resolve_checkpoint(str(tmp_path / "ckpt")) == (tmp_path / "ckpt").resolve()


def test_resolve_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.json") as err:
        resolve_checkpoint(tmp_path / "empty")
    assert "model.safetensors" in str(err.value)  # says what the folder holds


def test_resolve_from_hf_hub_cache(tmp_path, monkeypatch, no_network):
    snapshot = fake_cache(tmp_path / "hub", "org/tiny-bert")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_checkpoint("org/tiny-bert") == snapshot
    assert resolve_checkpoint("org/tiny-bert", revision=SHA) == snapshot
    with CheckpointReader(resolve_checkpoint("org/tiny-bert")) as reader:
        assert "a.weight" in reader


def test_resolve_from_hf_home(tmp_path, monkeypatch, no_network):
    snapshot = fake_cache(tmp_path / "home" / "hub", "legacy-name")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert resolve_checkpoint("legacy-name") == snapshot


def test_uncached_hub_id_fails_fast_without_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("org/not-downloaded")
    assert time.perf_counter() - start < 2.0
    msg = str(err.value)
    assert "org/not-downloaded" in msg and str(tmp_path / "hub") in msg
    assert "hf download org/not-downloaded" in msg and "huggingface-cli download" in msg
    assert "local folder" in msg


def test_cached_repo_without_snapshot_for_revision(tmp_path, monkeypatch, no_network):
    fake_cache(tmp_path / "hub", "org/half", files=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="no snapshot with config.json"):
        resolve_checkpoint("org/half")


def test_missing_path_that_is_not_a_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="No folder"):
        resolve_checkpoint(tmp_path / "nowhere" / "deep")


def test_read_config(tmp_path):
    write_checkpoint(tmp_path, config={"model_type": "bert", "hidden_size": 32})
    assert read_config(tmp_path) == {"model_type": "bert", "hidden_size": 32}
    assert read_config(tmp_path / "config.json")["hidden_size"] == 32


def test_read_config_errors(tmp_path):
    with pytest.raises(CheckpointError, match="No config.json"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert",')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON list"):
        read_config(tmp_path)


def test_reader_single_safetensors(tmp_path):
    state = write_checkpoint(tmp_path)
    with CheckpointReader(tmp_path) as reader:
        assert reader.format == "safetensors" and reader.source.name == "model.safetensors"
        assert_reads(reader, state)
        # twice: reading does not consume or alter anything
        assert_reads(reader, state)
    with CheckpointReader(tmp_path / "model.safetensors") as reader:
        assert_reads(reader, state)


def test_reader_missing_key_names_the_file(tmp_path):
    write_checkpoint(tmp_path)
    with CheckpointReader(tmp_path) as reader, pytest.raises(CheckpointError, match="model.safetensors") as err:
        reader.get("no.such.key")
    assert "no.such.key" in str(err.value)


def write_sharded(folder, state, split):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    names = list(state)
    shards = {"model-00001-of-00002.safetensors": names[:split], "model-00002-of-00002.safetensors": names[split:]}
    weight_map = {}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / file)
        weight_map.update({k: file for k in keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_reader_sharded_safetensors(tmp_path):
    state = random_state()
    write_sharded(tmp_path, state, split=2)
    with CheckpointReader(tmp_path) as reader:
        assert reader.format == "safetensors" and len(reader.files) == 2
        assert_reads(reader, state)
        assert reader.describe("d.ids").endswith("model-00002-of-00002.safetensors")


def test_reader_sharded_missing_shard(tmp_path):
    write_sharded(tmp_path, random_state(), split=2)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        CheckpointReader(tmp_path)


def test_reader_sharded_index_disagrees_with_shard(tmp_path):
    state = random_state()
    write_sharded(tmp_path, state, split=2)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="ghost.weight"):
        CheckpointReader(tmp_path)


def test_reader_torch_bin(tmp_path):
    state = random_state()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with CheckpointReader(tmp_path) as reader:
        assert reader.format == "bin"
        assert_reads(reader, state)


def test_reader_prefers_safetensors_over_bin(tmp_path):
    state = write_checkpoint(tmp_path)
    torch.save({"other": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with CheckpointReader(tmp_path) as reader:
        assert reader.source.name == "model.safetensors"
        assert_reads(reader, state)


def test_reader_corrupt_bin(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"definitely not a zip file")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        CheckpointReader(tmp_path)


def test_reader_no_weights_lists_what_it_looked_for(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError) as err:
        CheckpointReader(tmp_path)
    msg = str(err.value)
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        assert name in msg


def test_truncated_safetensors_fails_on_open(tmp_path):
    write_checkpoint(tmp_path)
    file = tmp_path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 40])
    with pytest.raises(CheckpointError, match="truncated") as err:
        CheckpointReader(tmp_path)
    assert str(file) in str(err.value)


@pytest.mark.parametrize("content, why", [
    (b"\x07\x00", "too few"),
    (struct.pack("<Q", 10**12) + b"{}", "header length"),
    (struct.pack("<Q", 12) + b"not json{{{" + b"\x00" * 64, "not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "expected an object"),
], ids=["tiny", "huge-length", "garbage-json", "json-list"])
def test_garbage_header_fails_on_open(tmp_path, content, why):
    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=why) as err:
        CheckpointReader(tmp_path)
    assert "model.safetensors" in str(err.value)


def test_header_offsets_beyond_the_file(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 32)
    with pytest.raises(CheckpointError, match="'w' ends at data byte 64 but the file holds only 32"):
        CheckpointReader(tmp_path)


def test_header_byte_count_disagrees_with_shape(tmp_path):
    header = json.dumps({"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="needs 32 bytes"):
        CheckpointReader(tmp_path)
