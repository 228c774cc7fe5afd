import cv2
import numpy as np
import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.masking_utils import create_causal_mask

from fakes import write_fake_arcface
from starcaster.conditioning.identity import (
    ARC2FACE_PROMPT,
    Arc2FaceEncoder,
    ArcFaceEmbedder,
    TinyFaceEncoder,
    build_tiny_tokenizer,
)
from starcaster.face import ARCFACE_TEMPLATE, similarity_transform

HIDDEN = 64


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def encoder(tokenizer):
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return Arc2FaceEncoder(CLIPTextModel(config).eval(), tokenizer)


def clip_on_embeddings(text_encoder, token_embeds):
    """Reference: CLIP's text transformer run by hand on given token embeddings (what Arc2Face's wrapper does)."""
    hidden = text_encoder.embeddings(inputs_embeds=token_embeds)
    mask = create_causal_mask(
        config=text_encoder.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None
    )
    hidden = text_encoder.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
    return text_encoder.final_layer_norm(hidden)


def test_tiny_tokenizer_is_a_real_clip_tokenizer(tokenizer):
    reloaded = CLIPTokenizer.from_pretrained(tokenizer.name_or_path)  # from vocab.json + merges.txt
    ids = reloaded(ARC2FACE_PROMPT, padding="max_length", max_length=77).input_ids
    tokens = reloaded.convert_ids_to_tokens(ids[:7])
    assert tokens == ["<|startoftext|>", "photo</w>", "of</w>", "a</w>", "id</w>", "person</w>", "<|endoftext|>"]
    assert len(ids) == 77 and set(ids[6:]) == {reloaded.eos_token_id}  # padded with the end token, as SD-1.5's is
    assert reloaded.eos_token_id == len(reloaded) - 1  # CLIP's pooling assumes the end token has the highest id
    # Text outside the prompt still tokenises (byte by byte) and round-trips.
    decoded = reloaded.decode(reloaded("Hello, world!").input_ids, skip_special_tokens=True)
    assert decoded.replace(" ", "") == "hello,world!"


def test_placeholder_left_as_the_word_equals_clip(encoder):
    with torch.no_grad():
        ours = encoder.encode(encoder.prompt_ids)
        clip = encoder.text_encoder(input_ids=encoder.prompt_ids).last_hidden_state
    assert ours.shape == (1, 77, HIDDEN)
    torch.testing.assert_close(ours, clip, rtol=0, atol=0)


def test_identity_replaces_only_the_placeholder(encoder):
    torch.manual_seed(1)
    embeddings = torch.randn(2, 48) * 5.0  # unnormalised, narrower than the encoder: normalised and zero-padded
    with torch.no_grad():
        tokens = encoder(embeddings)
        plain = encoder.encode(encoder.prompt_ids)
        # Reference by hand: unit vector, zero-padded to the width, written over the token embedding of "id".
        token_embeds = encoder.text_encoder.get_input_embeddings()(encoder.prompt_ids.expand(2, -1)).clone()
        unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
        token_embeds[:, encoder.placeholder_index] = torch.nn.functional.pad(unit, (0, HIDDEN - 48))
        expected = clip_on_embeddings(encoder.text_encoder, token_embeds)
    assert tokens.shape == (2, 77, HIDDEN)
    torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)

    i = encoder.placeholder_index
    assert i == 4  # <start> photo of a [id] person <end> <pad>...
    # Causal attention: tokens before the placeholder cannot see it; it and everything after it (padding included,
    # which CLIP does not mask) change, and differently for different identities.
    torch.testing.assert_close(tokens[:, :i], plain.expand(2, -1, -1)[:, :i], rtol=0, atol=0)
    assert ((tokens[:, i:] - plain[:, i:]).abs().amax(-1) > 1e-3).all()
    assert ((tokens[0, i:] - tokens[1, i:]).abs().amax(-1) > 1e-3).all()
    # Only the direction matters (ArcFace embeddings are compared by angle), and batch items are independent.
    with torch.no_grad():
        torch.testing.assert_close(encoder(embeddings[1] * 0.01)[0], tokens[1], rtol=1e-5, atol=1e-5)


def test_unconditional_is_the_empty_prompt(encoder):
    with torch.no_grad():
        uncond = encoder.unconditional(3)
        ids = encoder.tokenizer("", padding="max_length", max_length=77, return_tensors="pt").input_ids
        clip = encoder.text_encoder(input_ids=ids).last_hidden_state
    assert uncond.shape == (3, 77, HIDDEN)
    torch.testing.assert_close(uncond, clip.expand(3, -1, -1), rtol=0, atol=0)


def test_bad_embeddings_are_refused(encoder):
    with pytest.raises(ValueError, match="E <= 64"):
        encoder(torch.randn(1, 512))
    with pytest.raises(ValueError, match="all zeros"):
        encoder(torch.zeros(1, 32))


def test_save_load_round_trip(encoder, tmp_path):
    encoder.text_encoder.save_pretrained(tmp_path / "text_encoder")
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    assert (tmp_path / "text_encoder" / "model.safetensors").is_file()
    loaded = Arc2FaceEncoder.from_pretrained(tmp_path)
    embedding = torch.randn(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(embedding), encoder(embedding), rtol=0, atol=0)
    assert loaded.hidden_size == HIDDEN

    face = TinyFaceEncoder(embedding_dim=32, block_out_channels=(8, 16), norm_num_groups=4, input_size=32)
    face.save_pretrained(tmp_path / "face_encoder")
    assert (tmp_path / "face_encoder" / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = TinyFaceEncoder.from_pretrained(tmp_path / "face_encoder")
    images = torch.rand(2, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        out = face(images)
        torch.testing.assert_close(reloaded(images), out, rtol=0, atol=0)
    assert out.shape == (2, 32)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "text_encoder" / "config.json").write_text("{}")
    (tmp_path / "text_encoder" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="tokenizer/vocab.json.*safetensors only"):
        Arc2FaceEncoder.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------------------------
# ArcFace through insightface, on a stand-in ONNX model with ArcFace's signature




def smooth_image(seed, size=112):
    noise = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def test_arcface_embedder_through_insightface(tmp_path):
    pytest.importorskip("insightface")
    weight = write_fake_arcface(tmp_path / "arcface.onnx")
    embedder = ArcFaceEmbedder(tmp_path)
    assert embedder.detector == "auto"  # no SCRFD file beside it: the pipeline falls back to the cascade
    image = smooth_image(0)
    embedding = embedder(image)
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    assert abs(np.linalg.norm(embedding) - 1.0) < 1e-5

    # The network saw the RGB image normalised to [-1, 1], as ArcFace expects.
    blob = (image.astype(np.float32) - 127.5) / 127.5
    pooled = blob.reshape(7, 16, 7, 16, 3).mean(axis=(1, 3)).transpose(2, 0, 1).reshape(-1)
    expected = pooled @ weight
    np.testing.assert_allclose(embedding, expected / np.linalg.norm(expected), atol=1e-4)

    other = embedder(smooth_image(1))
    assert float(embedding @ other) < 0.9  # a different face, a different embedding

    # With landmarks the face is aligned first: the same crop seen rotated and enlarged in a larger photo.
    angle, scale = np.deg2rad(20.0), 2.0
    to_photo = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    matrix = np.concatenate([to_photo, [[150.0], [80.0]]], axis=1)
    photo = cv2.warpAffine(image, matrix, (400, 400), flags=cv2.INTER_CUBIC)
    landmarks = ARCFACE_TEMPLATE @ matrix[:, :2].T + matrix[:, 2]
    back = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(back[:, :2], np.linalg.inv(to_photo), atol=1e-9)
    assert float(embedder(photo, landmarks) @ embedding) > 0.99


def test_arcface_embedder_missing_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*checkpoints/README.md"):
        ArcFaceEmbedder(tmp_path / "antelopev2")
    (tmp_path / "antelopev2").mkdir()
    with pytest.raises(ValueError, match="arcface.onnx.*glintr100.onnx"):
        ArcFaceEmbedder(tmp_path / "antelopev2")


# --------------------------------------------------------------------------------------------------------------------
# Saved identity embeddings (.npy files and arrays): one parser for the UI, the CLI and the pipeline


def test_load_identity_embedding_accepts_files_and_arrays(tmp_path):
    from starcaster.conditioning.identity import load_identity_embedding

    values = np.random.default_rng(0).standard_normal(512)
    path = tmp_path / "id.npy"
    np.save(path, values)
    for given in (path, str(path), values, values[None], values[:, None], torch.from_numpy(values)):
        out = load_identity_embedding(given, 512)
        assert out.shape == (512,) and out.dtype == np.float32
        np.testing.assert_allclose(out, values.astype(np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda d: np.zeros(512), "all zeros"),
    (lambda d: np.full(512, np.nan), "NaN or infinite"),
    (lambda d: np.r_[np.ones(511), np.inf], "NaN or infinite"),
    (lambda d: np.ones(256), r"must hold 512 numbers.*got shape \(256,\)"),
    (lambda d: np.ones((2, 256)), r"must hold 512 numbers.*got shape \(2, 256\)"),
    (lambda d: np.ones((1, 1, 512)), r"got shape \(1, 1, 512\)"),
    (lambda d: np.array(["a"] * 512), "must hold numbers"),
    (lambda d: d / "missing.npy", "does not exist"),
])
def test_load_identity_embedding_refuses_bad_input(tmp_path, make, message):
    from starcaster.conditioning.identity import load_identity_embedding

    with pytest.raises(ValueError, match=message):
        load_identity_embedding(make(tmp_path), 512)


@pytest.mark.parametrize("content", [b"not numpy at all", b"\x80\x04\x95 pickled-looking bytes", b""])
def test_garbage_npy_file_is_not_a_valid_array_and_never_mentions_pickle(tmp_path, content):
    from starcaster.conditioning.identity import load_identity_embedding

    path = tmp_path / "face.npy"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"'face\.npy' is not a valid \.npy array.*numpy\.save") as info:
        load_identity_embedding(path, 512)
    assert "pickle" not in str(info.value).lower()
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickled object array: refused
    with pytest.raises(ValueError, match="not a valid .npy array"):
        load_identity_embedding(objects, 512)
    archive = tmp_path / "two.npz"
    np.savez(archive, a=np.ones(512))
    with pytest.raises(ValueError, match="npz archive"):
        load_identity_embedding(archive, 512)
