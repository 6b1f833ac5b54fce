"""The shipped MiniLM ONNX graph rebuilt with onnxruntime's fused BERT operators: same weights,
same arithmetic (float32), about a third less CPU a chunk.

The packaged graph (a PyTorch export) computes attention from single MatMul, Softmax, Transpose
and Where nodes, with a NaN guard after every softmax that stops onnxruntime fusing them. This
module reads its int8 weights and their scales and writes one `EmbedLayerNormalization`, then per
layer one `Attention` (query, key and value in one weight), `SkipLayerNormalization` and
`BiasGelu`: the operators onnxruntime's own BERT optimiser produces. The weights stay int8 with a
Cast and a Mul (as in the package), which onnxruntime folds when it opens the session, so the
vectors match the packaged graph's to float rounding (tested: `tests/test_minilm_graph.py`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LAYERS = 6
HEADS = 12
HIDDEN = 384
EPSILON = 1e-12
PREFIX = "inner.encoder.layer"
# The packaged graph names a dense layer's weight by a generated id; its bias names the layer.
_BIAS = re.compile(
    r"inner\.encoder\.layer\.(\d+)\."
    r"(attention\.self\.query|attention\.self\.key|attention\.self\.value|"
    r"attention\.output\.dense|intermediate\.dense|output\.dense)\.bias"
)


def fused_model(source: Path, quantized: bool = False) -> bytes:
    """The fused graph of the packaged model at `source`, serialised for an InferenceSession.

    quantized: the dense layers multiply in int8 (`DynamicQuantizeMatMul` and `QAttention` on the
    packaged int8 weights, activations quantized per call): about
    twice as fast again, with vectors that differ slightly (cosine about 0.995 to the float ones).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    dequant: dict[str, tuple[str, str]] = {}  # weight name -> (int8 tensor, scale tensor)
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast"}
    for node in graph.node:
        if node.op_type == "Mul" and node.input[0] in casts:
            dequant[node.output[0]] = (casts[node.input[0]], node.input[1])
    producers = {n.output[0]: n for n in graph.node}
    weights: dict[tuple[int, str], str] = {}  # (layer, dense name) -> weight name
    for node in graph.node:
        found = node.op_type == "Add" and _BIAS.fullmatch(node.input[1])
        if not found:
            continue
        matmul = producers.get(node.input[0])
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in dequant:
            raise ValueError(f"unexpected MiniLM graph around {node.input[1]}")
        weights[(int(found.group(1)), found.group(2))] = matmul.input[1]
    if len(weights) != 6 * LAYERS:
        raise ValueError(f"found {len(weights)} dense layers in the MiniLM graph, expected 36")

    ms = "com.microsoft"
    nodes: list[Any] = []
    kept: list[Any] = []
    made: set[str] = set()

    def weight(name: str) -> str:
        """The float weight `name`, made from its int8 tensor and scale (once)."""
        if name in made:
            return name
        made.add(name)
        if name not in dequant:
            kept.append(initializers[name])
            return name
        quantised, scale = dequant[name]
        kept.extend([initializers[quantised], initializers[scale]])
        nodes.append(helper.make_node("Cast", [quantised], [f"{name}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", [f"{name}_f", scale], [name]))
        return name

    def tensor(name: str, values: Any) -> str:
        kept.append(numpy_helper.from_array(np.asarray(values, dtype=np.float32), name))
        return name

    def array(name: str) -> Any:
        return numpy_helper.to_array(initializers[name])

    def dense(x: str, names: list[str], out: str) -> None:
        """x times the weights `names` side by side (no bias): float, or int8 when quantized."""
        if not quantized:  # one float weight (query, key and value go to Attention whole)
            nodes.append(helper.make_node("MatMul", [x, weight(names[0])], [out]))
            return
        q = np.concatenate([array(dequant[n][0]) for n in names], axis=1)
        scale = np.concatenate([array(dequant[n][1]).reshape(-1) for n in names])
        kept.append(numpy_helper.from_array(q, f"{out}_q"))
        tensor(f"{out}_scale", scale)
        kept.append(numpy_helper.from_array(np.zeros(len(scale), dtype=q.dtype), f"{out}_zero"))
        nodes.append(
            helper.make_node(
                "DynamicQuantizeMatMul",
                [x, f"{out}_q", f"{out}_scale", f"{out}_zero"],
                [out],
                domain=ms,
            )
        )

    nodes.append(helper.make_node("Cast", ["input_ids"], ["ids32"], to=TensorProto.INT32))
    nodes.append(helper.make_node("Cast", ["token_type_ids"], ["types32"], to=TensorProto.INT32))
    nodes.append(helper.make_node("Cast", ["attention_mask"], ["mask32"], to=TensorProto.INT32))
    embeddings = "inner.embeddings"
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "ids32",
                "types32",
                weight(f"{embeddings}.word_embeddings.weight"),
                weight(f"{embeddings}.position_embeddings.weight"),
                weight(f"{embeddings}.token_type_embeddings.weight"),
                weight(f"{embeddings}.LayerNorm.weight"),
                weight(f"{embeddings}.LayerNorm.bias"),
                "mask32",
            ],
            ["hidden_0", "mask_index"],
            domain=ms,
            epsilon=EPSILON,
        )
    )
    for layer in range(LAYERS):
        base = f"{PREFIX}.{layer}"
        x = f"hidden_{layer}"
        bias = np.concatenate(
            [array(f"{base}.attention.self.{part}.bias") for part in ("query", "key", "value")]
        )
        qkv = [weights[(layer, f"attention.self.{part}")] for part in ("query", "key", "value")]
        if quantized:  # QAttention: the layer input quantized per call, the weights int8
            q = np.concatenate([array(dequant[n][0]) for n in qkv], axis=1)
            scale = np.concatenate([array(dequant[n][1]).reshape(-1) for n in qkv])
            kept.append(numpy_helper.from_array(q, f"qkv_q_{layer}"))
            kept.append(numpy_helper.from_array(np.zeros(len(scale), q.dtype), f"qkv_zero_{layer}"))
            nodes.append(
                helper.make_node(
                    "DynamicQuantizeLinear", [x], [f"{x}_u8", f"{x}_scale", f"{x}_zero"]
                )
            )
            nodes.append(
                helper.make_node(
                    "QAttention",
                    [
                        f"{x}_u8",
                        f"qkv_q_{layer}",
                        tensor(f"qkv_b_{layer}", bias),
                        f"{x}_scale",
                        tensor(f"qkv_scale_{layer}", scale),
                        "mask_index",
                        f"{x}_zero",
                        f"qkv_zero_{layer}",
                    ],
                    [f"attn_{layer}"],
                    domain=ms,
                    num_heads=HEADS,
                )
            )
        else:
            nodes.append(
                helper.make_node("Concat", [weight(n) for n in qkv], [f"qkv_w_{layer}"], axis=1)
            )
            nodes.append(
                helper.make_node(
                    "Attention",
                    [x, f"qkv_w_{layer}", tensor(f"qkv_b_{layer}", bias), "mask_index"],
                    [f"attn_{layer}"],
                    domain=ms,
                    num_heads=HEADS,
                )
            )
        dense(f"attn_{layer}", [weights[(layer, "attention.output.dense")]], f"attn_out_{layer}")
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    f"attn_out_{layer}",
                    x,
                    weight(f"{base}.attention.output.LayerNorm.weight"),
                    weight(f"{base}.attention.output.LayerNorm.bias"),
                    weight(f"{base}.attention.output.dense.bias"),
                ],
                [f"mid_{layer}"],
                domain=ms,
                epsilon=EPSILON,
            )
        )
        dense(f"mid_{layer}", [weights[(layer, "intermediate.dense")]], f"up_{layer}")
        nodes.append(
            helper.make_node(
                "BiasGelu",
                [f"up_{layer}", weight(f"{base}.intermediate.dense.bias")],
                [f"gelu_{layer}"],
                domain=ms,
            )
        )
        dense(f"gelu_{layer}", [weights[(layer, "output.dense")]], f"down_{layer}")
        out = "last_hidden_state" if layer == LAYERS - 1 else f"hidden_{layer + 1}"
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    f"down_{layer}",
                    f"mid_{layer}",
                    weight(f"{base}.output.LayerNorm.weight"),
                    weight(f"{base}.output.LayerNorm.bias"),
                    weight(f"{base}.output.dense.bias"),
                ],
                [out],
                domain=ms,
                epsilon=EPSILON,
            )
        )
    fused = helper.make_graph(
        nodes, "minilm-fused", list(graph.input), list(graph.output), initializer=kept
    )
    result = helper.make_model(
        fused,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)],
        producer_name="agent-orchestrator",
    )
    result.ir_version = model.ir_version
    return bytes(result.SerializeToString())
