"""The ``denoise`` ONNX graph: an ONNX ``Loop`` over the timestep window, composed from the
exported ``cond`` and ``body`` pieces (``lrf.exporter.onnx_core``).

    denoise(latent [B,C,h,w] f32, timesteps [K+1] f32, label [B] i32, guidance [B] f32)
        -> latent [B,C,h,w] f32
    for i in 0..K-1:  v = velocity(z, t_i) ;  z = z + (t_{i+1} - t_i) * v     (float32)

The trip count is K = len(timesteps) - 1, read from the input, so one file serves a window of
one step (stepwise, with progress and cancel between calls), chunks, and the whole schedule of
any N. Per call, before the loop: the conditioning of every step of the window (``cond``), the
latent turned into tokens [B,1,N,C], and the K step sizes; the body is one velocity evaluation
plus the Euler update, which is written here and nowhere else in the ONNX export. The weights
are outer-scope initializers, stored once whatever K is.

Why compose instead of tracing a loop: the dynamo exporter unrolls Python loops, and its cost
grows with the unrolled graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


def _prefix_graph(graph: onnx.GraphProto, tag: str, inputs: dict[str, str],
                  init_names: dict[str, str]) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Copies of ``graph``'s nodes with intermediate tensors renamed ``tag/<name>``; graph inputs
    mapped through ``inputs`` and initializers through ``init_names``. Returns (nodes, map)."""
    names = dict(inputs)
    names.update(init_names)
    nodes, seen = [], set()
    for k, node in enumerate(graph.node):
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ValueError(f"cannot compose: node {node.name!r} has a subgraph")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        # onnxruntime requires unique node names; quantisers leave some empty
        new.name = f"{tag}/{node.name}" if node.name and node.name not in seen else f"{tag}/#{k}"
        seen.add(node.name)
        for i, x in enumerate(node.input):
            if x:  # "" marks an omitted optional input
                new.input[i] = names.setdefault(x, f"{tag}/{x}")
        for i, y in enumerate(node.output):
            if y:
                new.output[i] = names.setdefault(y, f"{tag}/{y}")
        nodes.append(new)
    return nodes, names


def _initializers(tag: str, graph: onnx.GraphProto) -> tuple[list, dict[str, str]]:
    inits, names = [], {}
    for init in graph.initializer:
        new = onnx.TensorProto()
        new.CopyFrom(init)
        new.name = names[init.name] = f"{tag}/{init.name}"
        inits.append(new)
    return inits, names


def _const(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def compose_denoise(cond: onnx.ModelProto, body: onnx.ModelProto, inputs: list[dict],
                    output: dict) -> onnx.ModelProto:
    """``denoise`` from ``cond`` (timesteps, label, guidance -> cond [K,B',1,1,D]) and ``body``
    (z [B,1,N,C], cond [B',1,1,D], guidance [B,1,1,1] -> velocity [B,1,N,C]; a turbo body has
    no guidance input). ``inputs``/``output``: the manifest tensor entries (names, shapes)."""
    by_role = {t["role"]: t for t in inputs}
    lat = by_role["latent"]
    c, h, w = lat["shape"][1:]
    n = h * w
    latent, ts, label, guidance = (by_role[r]["name"] for r in
                                   ("latent", "timesteps", "label", "guidance"))
    c_inits, c_names = _initializers("c", cond.graph)
    b_inits, b_names = _initializers("b", body.graph)
    inits = c_inits + b_inits + [
        _const("d/tok_shape", [0, c, n]), _const("d/z_shape", [0, 1, n, c]),
        _const("d/out_shape", [0, c, h, w]), _const("d/flat_shape", [0, n, c]),
        _const("d/g_shape", [-1, 1, 1, 1]), _const("d/zero", [0]), _const("d/one", [1]),
        _const("d/minus_one", [-1]), _const("d/big", [np.iinfo(np.int64).max])]
    cond_in = [i.name for i in cond.graph.input]
    nodes, names = _prefix_graph(cond.graph, "c", {k: {"timesteps": ts, "label": label,
                                                       "guidance": guidance}[k]
                                                   for k in cond_in}, c_names)
    cond_all = names[cond.graph.output[0].name]
    mk = helper.make_node
    nodes += [
        # tokens [B,1,N,C] for the loop; back to [B,C,h,w] after it
        mk("Reshape", [latent, "d/tok_shape"], ["d/z_cn"], name="d/z_cn"),
        mk("Transpose", ["d/z_cn"], ["d/z_nc"], name="d/z_nc", perm=[0, 2, 1]),
        mk("Reshape", ["d/z_nc", "d/z_shape"], ["d/z0"], name="d/z0"),
        mk("Reshape", [guidance, "d/g_shape"], ["d/g4"], name="d/g4"),
        # the step sizes t_{i+1} - t_i (float32) and the trip count K
        mk("Slice", [ts, "d/one", "d/big"], ["d/t_next"], name="d/t_next"),
        mk("Slice", [ts, "d/zero", "d/minus_one"], ["d/t_cur"], name="d/t_cur"),
        mk("Sub", ["d/t_next", "d/t_cur"], ["d/dts"], name="d/dts"),
        mk("Shape", ["d/dts"], ["d/k1"], name="d/k1"),
        mk("Squeeze", ["d/k1", "d/zero"], ["d/k"], name="d/k"),
    ]
    body_in = [i.name for i in body.graph.input]
    feeds = {"z": "z", "cond": "cond_i", "guidance": "d/g4"}
    b_nodes, b_map = _prefix_graph(body.graph, "b", {k: feeds[k] for k in body_in}, b_names)
    velocity = b_map[body.graph.output[0].name]
    z_dims = ["batch", 1, n, c]
    loop_body = helper.make_graph(
        [mk("Gather", [cond_all, "it"], ["cond_i"], name="loop/cond_i", axis=0),
         mk("Gather", ["d/dts", "it"], ["dt"], name="loop/dt", axis=0),
         *b_nodes,
         # the Euler update, z + (t_{i+1} - t_i) * v, as lrf.models.flow.euler_sample
         mk("Mul", [velocity, "dt"], ["dz"], name="loop/dz"),
         mk("Add", ["z", "dz"], ["z_next"], name="loop/z_next")],
        "euler_step",
        [helper.make_tensor_value_info("it", INT64, []),
         helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("z", FLOAT, z_dims)],
        [helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_next", FLOAT, z_dims)])
    nodes += [
        mk("Loop", ["d/k", "", "d/z0"], ["d/z_final"], name="d/euler_loop", body=loop_body),
        mk("Reshape", ["d/z_final", "d/flat_shape"], ["d/z_flat"], name="d/z_flat"),
        mk("Transpose", ["d/z_flat"], ["d/z_cn_out"], name="d/z_cn_out", perm=[0, 2, 1]),
        mk("Reshape", ["d/z_cn_out", "d/out_shape"], [output["name"]], name="d/out")]

    def vi(t):
        elem = {"float32": FLOAT, "int32": onnx.TensorProto.INT32}[t["dtype"]]
        return helper.make_tensor_value_info(t["name"], elem, [d if s < 0 else s for s, d in
                                                               zip(t["shape"], t["dims"])])

    graph = helper.make_graph(nodes, "denoise", [vi(t) for t in inputs], [vi(output)], inits)
    opsets: dict[str, int] = {}
    for o in list(cond.opset_import) + list(body.opset_import):
        opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v)
                                                    for d, v in sorted(opsets.items())],
                              producer_name="lrf-export", ir_version=body.ir_version)
    helper.set_model_props(model, {"lrf.graph": "denoise", "lrf.form": "loop"})
    return model
