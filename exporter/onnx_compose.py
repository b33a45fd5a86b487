"""The fused ``generator_<N>`` ONNX graph, composed from the exported ``step`` and ``decoder``
graphs, so weights are stored once and the math is exactly the stepwise path's: t_i as float32
constants (``lrf.runtime.scheduler``), ``z + float32(t_{i+1} - t_i) * v``, then the decoder. An
int8 generator reuses the calibrated int8 step and decoder unchanged.

Two forms (measured on the cifar10 preset, one thread, CPU time, this machine):

* ``loop`` (default): an ONNX ``Loop`` of N iterations whose body is the step graph. The file is
  step + decoder for any N (0.99x), and a session opens in ~0.2-0.4 s.
* ``unrolled``: N copies of the step's nodes. Node definitions grow with N: int8 at N=8 is
  already 1.26x step + decoder (above the 1.2x budget), and onnxruntime spends ~21 s (int8, N=8)
  optimising it when a session opens; per image it was 15-25% faster than the loop at N=8.

Why compose at all instead of tracing ``GeneratorGraph``: the dynamo exporter's cost grows with
the unrolled graph (the cifar10 core at N = 50 did not finish in 11 CPU-minutes here).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lrf.runtime import scheduler


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


def _copy_initializers(step: onnx.ModelProto, decoder: onnx.ModelProto):
    inits, init_map = [], {}
    for tag, g in (("s", step.graph), ("d", decoder.graph)):
        init_map[tag] = {}
        for init in g.initializer:
            new = onnx.TensorProto()
            new.CopyFrom(init)
            new.name = f"{tag}/{init.name}"
            init_map[tag][init.name] = new.name
            inits.append(new)
    return inits, init_map


def _finish(step, decoder, nodes, inits, steps, image, noise, form):
    sg, dg = step.graph, decoder.graph
    s_in = {i.name: i for i in sg.input}
    elem = dg.output[0].type.tensor_type.elem_type
    out = helper.make_tensor_value_info("image", elem, [d if s < 0 else s for s, d in
                                                        zip(image["shape"], image["dims"])])
    graph = helper.make_graph(nodes, f"generator_{steps}",
                              [noise, s_in["label"], s_in["guidance"]], [out], inits)
    opsets = {o.domain: o.version for o in list(step.opset_import) + list(decoder.opset_import)}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v)
                                                    for d, v in sorted(opsets.items())],
                              producer_name="lrf-export", ir_version=step.ir_version)
    helper.set_model_props(model, {"lrf.graph": f"generator_{steps}", "lrf.form": form,
                                   "lrf.steps": str(steps)})
    return model


def _noise_input(step: onnx.ModelProto) -> onnx.ValueInfoProto:
    latent = {i.name: i for i in step.graph.input}["latent"]
    return helper.make_tensor_value_info("noise", onnx.TensorProto.FLOAT,
                                         [d.dim_param or d.dim_value
                                          for d in latent.type.tensor_type.shape.dim])


def compose_generator(step: onnx.ModelProto, decoder: onnx.ModelProto, steps: int,
                      shift: float, image: dict, form: str = "loop") -> onnx.ModelProto:
    """generator(noise [B,C,h,w] f32, label [B] i32, guidance [B] f32) -> image, from the step
    graph (inputs latent, t, label, guidance -> velocity) and the decoder (latent -> image).
    ``image`` is the output's manifest tensor entry (shape, with -1 for the batch).

    ``form="loop"``: one ONNX ``Loop`` of N iterations whose body is the step graph (t_i and
    dt_i gathered from constant tables by the iteration index); the file is step + decoder
    whatever N. ``form="unrolled"``: N copies of the step's nodes (weights still shared)."""
    if form not in ("loop", "unrolled"):
        raise ValueError(f"form must be 'loop' or 'unrolled', got {form!r}")
    ts = scheduler.timesteps(steps, shift)
    inits, init_map = _copy_initializers(step, decoder)
    noise = _noise_input(step)
    nodes = [helper.make_node("Shape", ["noise"], ["batch_shape"], name="batch_shape",
                              start=0, end=1)]
    if form == "unrolled":
        z = "noise"
        for i in range(steps):
            t_name, dt_name = f"gen/t_{i}", f"gen/dt_{i}"
            inits.append(numpy_helper.from_array(np.asarray([ts[i]], dtype=np.float32), t_name))
            inits.append(numpy_helper.from_array(np.float32(ts[i + 1] - ts[i]), dt_name))
            nodes.append(helper.make_node("Expand", [t_name, "batch_shape"], [f"gen/tb_{i}"],
                                          name=f"gen/expand_t_{i}"))
            body, names = _prefix_graph(step.graph, f"s{i}",
                                        {"latent": z, "t": f"gen/tb_{i}", "label": "label",
                                         "guidance": "guidance"}, init_map["s"])
            nodes += body
            nodes.append(helper.make_node("Mul", [names["velocity"], dt_name], [f"gen/dz_{i}"],
                                          name=f"gen/mul_{i}"))
            nodes.append(helper.make_node("Add", [z, f"gen/dz_{i}"], [f"gen/z_{i + 1}"],
                                          name=f"gen/add_{i}"))
            z = f"gen/z_{i + 1}"
    else:
        # per-iteration constants: t_i as [1] (expanded to [B] in the body) and dt_i scalars
        inits.append(numpy_helper.from_array(ts[:-1].reshape(-1, 1).copy(), "gen/times"))
        inits.append(numpy_helper.from_array((ts[1:] - ts[:-1]).astype(np.float32),
                                             "gen/dts"))
        inits.append(numpy_helper.from_array(np.asarray(steps, dtype=np.int64), "gen/n"))
        body_nodes = [
            helper.make_node("Gather", ["gen/times", "it"], ["t1"], name="loop/t", axis=0),
            helper.make_node("Expand", ["t1", "batch_shape"], ["tb"], name="loop/expand_t"),
            helper.make_node("Gather", ["gen/dts", "it"], ["dt"], name="loop/dt", axis=0),
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop/cond")]
        body, names = _prefix_graph(step.graph, "s", {"latent": "z", "t": "tb", "label": "label",
                                                      "guidance": "guidance"}, init_map["s"])
        body_nodes += body
        body_nodes += [helper.make_node("Mul", [names["velocity"], "dt"], ["dz"], name="loop/mul"),
                       helper.make_node("Add", ["z", "dz"], ["z_next"], name="loop/add")]
        latent_dims = [d.dim_param or d.dim_value for d in noise.type.tensor_type.shape.dim]
        body_graph = helper.make_graph(
            body_nodes, "euler_step",
            [helper.make_tensor_value_info("it", onnx.TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
             helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, latent_dims)],
            [helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
             helper.make_tensor_value_info("z_next", onnx.TensorProto.FLOAT, latent_dims)])
        nodes.append(helper.make_node("Loop", ["gen/n", "", "noise"], ["gen/z_final"],
                                      name="gen/euler_loop", body=body_graph))
        z = "gen/z_final"
    body, names = _prefix_graph(decoder.graph, "d", {"latent": z}, init_map["d"])
    nodes += body
    nodes.append(helper.make_node("Identity", [names["image"]], ["image"], name="gen/image"))
    return _finish(step, decoder, nodes, inits, steps, image, noise, form)
