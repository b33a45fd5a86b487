"""Weight-only int8/int4 quantisation of an ONNX graph, written here because onnxruntime's
quantisers do not reach into a ``Loop`` body (the ``denoise`` graph's steps).

* :func:`weight_only` stores every large MatMul/Gemm/Conv weight as int8 (one scale per output
  channel) or int4 (one scale per ``INT4_BLOCK`` weights along the reduction axis), each behind
  one ``DequantizeLinear`` at the top of the graph, which onnxruntime folds into a float constant
  at load: every call computes in float32, the file stores integers.
* ``int8_compute``: MatMuls at least ``INT8_COMPUTE_MIN`` wide compute in integers instead, as
  one ``DynamicQuantizeMatMul`` kernel each (:func:`_integer_matmul`).

Which variant a bundle ships is chosen by measurement in :mod:`lrf.exporter.onnx_int8`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lrf.exporter.onnx_graph import all_nodes

MIN_WEIGHT_ELEMENTS = 256  # smaller tensors (biases, tiny tables) stay float
INT4_BLOCK = 32  # weights per int4 scale
INT8_COMPUTE_MIN = 32  # dynamic_int4: narrower matmuls (patch, output) stay float


def _quantize_axis(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per slice along ``axis``: (q int8, scale float32 [w.shape[axis]])."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=red)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def _quantize_blocks(w: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 of a 2-D ``w`` in blocks of ``block`` along ``axis`` (the reduction axis):
    (q int8 holding -7..7, scale float32 with ``w.shape[axis] // block`` along ``axis``)."""
    wt = np.moveaxis(w, axis, 0)  # [D, C]
    blocks = wt.reshape(wt.shape[0] // block, block, -1)
    amax = np.abs(blocks).max(axis=1)
    scale = np.where(amax > 0, amax / 7.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(blocks / scale[:, None, :]), -7, 7).astype(np.int8)
    return (np.moveaxis(q.reshape(wt.shape), 0, axis),
            np.ascontiguousarray(np.moveaxis(scale, 0, axis)))


def _int4_tensor(q: np.ndarray, name: str) -> onnx.TensorProto:
    """ONNX INT4 initializer: two values per byte, the first in the low nibble."""
    flat = (q.reshape(-1).astype(np.int16) & 0x0F).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
    return helper.make_tensor(name, onnx.TensorProto.INT4, list(q.shape), packed.tobytes(),
                              raw=True)


def weight_only(model: onnx.ModelProto, bits: int = 8, block: int = INT4_BLOCK,
                int8_compute: bool = False,
                select: Callable[[str, np.ndarray], bool] | None = None) -> int:
    """Replace every float weight (MatMul input B of rank 2, Gemm B, Conv W) by int8 or int4
    plus a ``DequantizeLinear`` at the top of the graph, in place; returns the count.

    The weight is stored 2-D: MatMul [Din, Dout] and Gemm as they are; Conv [Cout, ...] as int8
    [Cout, ...] or, for int4, [Cout, Cin*k*k] (restored by Reshape). ``bits=8``: one scale per
    output channel. ``bits=4``: one scale per ``block`` consecutive weights along the reduction
    axis of one output channel (opset 21 blocked ``DequantizeLinear``); a weight whose reduction
    length is not a multiple of ``block`` stays int8. onnxruntime folds all of it to float at
    load.

    ``int8_compute`` (with ``bits=4``): each MatMul whose int4 weight is at least
    ``INT8_COMPUTE_MIN`` wide on both axes computes in integers instead, wherever it is (a Loop
    body included): :func:`_int8_weight`, :func:`_integer_matmul`.

    ``select(name, weight)``: quantize only the weights it accepts; a second call with other
    bits then takes the float weights left (e.g. int4 feed-forward, then int8 attention)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    roles: dict[str, set] = {}
    for node in all_nodes(g):
        trans = any(a.name == "transB" and a.i for a in node.attribute)
        for k, x in enumerate(node.input):
            if x in inits:
                roles.setdefault(x, set()).add((node.op_type, k, trans))
    front, count, int4 = [], 0, False
    integer: dict[str, str] = {}  # MatMul output -> its int8 weight (int8_compute)
    for name, uses in roles.items():
        init = inits[name]
        op, k, trans = next(iter(uses))
        if (init.data_type != onnx.TensorProto.FLOAT or len(uses) != 1 or k != 1
                or op not in ("MatMul", "Conv", "Gemm")):
            continue
        w = numpy_helper.to_array(init)
        ranks = {"MatMul": (2,), "Gemm": (2,), "Conv": (3, 4, 5)}[op]
        if w.size < MIN_WEIGHT_ELEMENTS or w.ndim not in ranks or \
                (select is not None and not select(name, w)):
            continue
        conv = op == "Conv"
        axis = 0 if conv or (op == "Gemm" and trans) else 1  # the output channels
        flat = w.reshape(w.shape[0], -1) if conv else w
        base = f"{name}_q"
        if (int8_compute and bits == 4 and op == "MatMul" and min(w.shape) >= INT8_COMPUTE_MIN
                and w.shape[0] % block == 0):
            front += _int8_weight(g, w, base, block)
            integer.update({n.output[0]: base for n in all_nodes(g)
                            if n.op_type == "MatMul" and n.input[1] == name})
            g.initializer.remove(init)
            count, int4 = count + 1, True
            continue
        if bits == 4 and flat.shape[1 - axis] % block == 0:  # blocks along the reduction axis
            stored = flat
            q, scale = _quantize_blocks(stored, 1 - axis, block)
            qt = _int4_tensor(q, base)
            dq_attrs = {"axis": 1 - axis, "block_size": block}
            int4 = True
        else:  # int8, one scale per output channel; a Conv keeps its own shape
            stored = w if conv else flat
            q, scale = _quantize_axis(stored, axis)
            qt = numpy_helper.from_array(q, base)
            dq_attrs = {"axis": axis}
        g.initializer.remove(init)
        g.initializer.extend([qt, numpy_helper.from_array(scale, f"{base}_scale")])
        restore = stored.shape != w.shape
        out = f"{base}_dq" if restore else name
        front.append(helper.make_node("DequantizeLinear", [base, f"{base}_scale"], [out],
                                      name=f"{base}/dq", **dq_attrs))
        if restore:  # a Conv weight stored [Cout, Cin*k*k]
            shape = numpy_helper.from_array(np.asarray(w.shape, np.int64), f"{base}_shape")
            g.initializer.append(shape)
            front.append(helper.make_node("Reshape", [out, shape.name], [name],
                                          name=f"{base}/reshape"))
        count += 1
    _rewrite_matmuls(g, integer)
    nodes = front + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    if int4:  # INT4 needs opset 21 (the other operators here are unchanged from 20) and IR 10
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = max(o.version, 21)
        model.ir_version = max(model.ir_version, 10)
    return count


def _int8_weight(top: onnx.GraphProto, w: np.ndarray, base: str, block: int
                 ) -> list[onnx.NodeProto]:
    """The int8 weight ``{base}_i8`` [K, N] of an integer MatMul (:func:`_integer_matmul`), from
    float ``w``: initializers added to ``top``; returns the nodes that make it, for the top of
    the graph.

    Stored: ``w`` as int4 in blocks of ``block`` along K (as ``weight_only`` with ``bits=4``),
    plus one int8 scale per output column. At the top: DequantizeLinear, then QuantizeLinear per
    column, both on constants, so onnxruntime folds them into one int8 ``[K, N]`` weight at load
    (the requantisation is exact up to rounding to that column scale)."""
    q, scale = _quantize_blocks(w, 0, block)
    deq = q.astype(np.float32) * np.repeat(scale, block, axis=0)
    amax = np.abs(deq).max(axis=0)
    col = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    top.initializer.extend([_int4_tensor(q, base), numpy_helper.from_array(scale, f"{base}_scale"),
                            numpy_helper.from_array(col, f"{base}_col_scale"),
                            numpy_helper.from_array(np.zeros(w.shape[1], np.int8),
                                                    f"{base}_col_zero")])
    mk = helper.make_node
    return [mk("DequantizeLinear", [base, f"{base}_scale"], [f"{base}_f"], name=f"{base}/dq",
               axis=0, block_size=block),
            mk("QuantizeLinear", [f"{base}_f", f"{base}_col_scale", f"{base}_col_zero"],
               [f"{base}_i8"], name=f"{base}/q", axis=1)]


def _rewrite_matmuls(graph: onnx.GraphProto, integer: dict[str, str]) -> None:
    """Replace, in ``graph`` and its subgraphs, each MatMul whose output is a key of ``integer``
    by :func:`_integer_matmul` with that weight. Subgraphs first: rebuilding a node list copies
    its nodes, subgraphs included."""
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else
                        attr.graphs if attr.type == onnx.AttributeProto.GRAPHS else []):
                _rewrite_matmuls(sub, integer)
    if not any(n.op_type == "MatMul" and n.output[0] in integer for n in graph.node):
        return
    nodes = []
    for n in graph.node:
        hit = n.op_type == "MatMul" and n.output[0] in integer
        nodes += _integer_matmul(n, integer[n.output[0]]) if hit else [n]
    del graph.node[:]
    graph.node.extend(nodes)


def _integer_matmul(node: onnx.NodeProto, base: str) -> list[onnx.NodeProto]:
    """The nodes replacing MatMul ``node`` by the int8 weight ``{base}_i8``
    (:func:`_int8_weight`): ``DynamicQuantizeLinear(A)`` (uint8, one scale and zero point per
    call), ``MatMulInteger``, ``Cast``, and one ``Mul`` by the product of the two scales: the
    pattern onnxruntime fuses into one ``DynamicQuantizeMatMul`` kernel (with the bias Add that
    follows)."""
    a, out = node.input[0], node.output[0]
    t = f"{node.name or out}/int8"
    mk = helper.make_node
    return [
        mk("DynamicQuantizeLinear", [a], [f"{t}/a", f"{t}/a_scale", f"{t}/a_zero"],
           name=f"{t}/quantize"),
        mk("MatMulInteger", [f"{t}/a", f"{base}_i8", f"{t}/a_zero", f"{base}_col_zero"],
           [f"{t}/acc"], name=f"{t}/matmul"),
        mk("Cast", [f"{t}/acc"], [f"{t}/acc_f"], name=f"{t}/cast", to=onnx.TensorProto.FLOAT),
        mk("Mul", [f"{t}/a_scale", f"{base}_col_scale"], [f"{t}/scale"], name=f"{t}/scale"),
        mk("Mul", [f"{t}/acc_f", f"{t}/scale"], [out], name=f"{t}/rescale")]
