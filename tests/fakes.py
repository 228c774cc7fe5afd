"""Stand-in models in the real formats (ONNX with ArcFace's / SCRFD's signatures, a small wav2vec2 config), shared
by the tests that exercise the real loading code without real weights."""

import numpy as np
import pytest
from transformers import Wav2Vec2Config


def tiny_wav2vec2_config(norm="group"):
    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
        vocab_size=32,
    )


def write_fake_scrfd(path):
    """An ONNX model with SCRFD's signature (1x3x160x160 -> scores, boxes, 5-point keypoints at strides 8/16/32) that
    reports one face, anchored at (80, 80) of its input, with confidence = how bright the image is."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["data"], ["mean"], keepdims=0),  # the blob is (pixel - 127.5) / 128
        helper.make_node("Add", ["mean", "one"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "half"], ["brightness"]),
    ]
    scalar = lambda value, name: numpy_helper.from_array(np.array(value, np.float32), name)  # noqa: E731
    inits = [scalar(1.0, "one"), scalar(0.5, "half"), scalar(0.0, "zero")]
    face = {"score": [1.0], "bbox": [4, 5, 4, 6], "kps": [-2, -1.5, 2, -1.5, 0, 0.5, -1.5, 2.5, 1.5, 2.5]}
    outputs = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in (8, 16, 32):
            rows = (160 // stride) ** 2 * 2
            value = np.zeros((rows, width), np.float32)
            if stride == 8:  # cell (10, 10), first anchor: centre (80, 80)
                value[420] = face[kind]
            name = f"{kind}_{stride}"
            inits.append(numpy_helper.from_array(value, name + "_value"))
            op = "Mul" if kind == "score" else "Add"
            other = "brightness" if kind == "score" else "zero"
            nodes.append(helper.make_node(op, [name + "_value", other], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, width]))
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 160, 160])
    graph = helper.make_graph(nodes, "fake_scrfd", [data], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def write_fake_arcface(path, seed=0):
    """1x3x112x112 float -> 1x512: 16x16 average pooling, then a random linear map (depends on every region)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((3 * 7 * 7, 512)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["fc1"]),
        ],
        "fake_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weight


def tiny_starcaster(seed=0, lora_rank=4):
    """A small STARCasterModel (8x8 latents, cross-attention width 32) with seeded weights."""
    import torch
    from diffusers import UNet2DConditionModel

    from starcaster.models import STARCasterConfig, STARCasterModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet2d = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
        )
        config = STARCasterConfig(feature_dim=16, audio_window=3, audio_tokens=2, audio_hidden_dim=32,
                                  camera_tokens=2, camera_hidden_dim=16, lora_rank=lora_rank)
        model = STARCasterModel.from_unet2d(unet2d, config).eval()
        # Move every addition off its identity start, as training would, so that each stream matters.
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.data.normal_(0, 0.05)
    return model
