"""The graphs of a schema v3 text bundle (``runtime/BUNDLE.md`` section 11), traced with the
TorchScript exporter (no loops inside; seconds), the ``denoise`` window composed as an ONNX
``Loop`` of one-step bodies here:

    denoise(latent [B,C,h,w], timesteps [K+1], label [B] i32 (style; null_class = none),
            guidance [B], text_pooled [B,T] (, text_tokens [B,Lmax,T], attention_mask [B,Lmax]))
    decoder(latent) -> straight RGBA uint8 [B,8h,8w,4]   (lrf.models.codec.model_to_rgba's rule)
    encoder(straight RGBA uint8 [B,H,W,4]) -> latent     (lrf.models.codec.rgba_to_model's rule)

A teacher's ``denoise`` holds the null prompt's conditioning (the fp32 embedding of "") as a
constant: guidance pairs (prompt, style) with ("", null style).
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from lrf.models.flow import euler_sample

OPSET = 18


class TextDenoiseStep(nn.Module):
    """One Euler step over ``timesteps`` [2] of ``lrf.models.flow.euler_sample`` with the prompt
    conditioning as inputs (the body of the ``denoise`` Loop)."""

    def __init__(self, model, null_class: int, null_text: dict, tokens: bool):
        super().__init__()
        self.model, self.null_class, self.tokens = model, null_class, tokens
        for k, v in null_text.items():
            self.register_buffer(f"null_{k}", v.clone(), persistent=False)

    def forward(self, latent, timesteps, label, guidance, text_pooled, text_tokens=None,
                attention_mask=None):
        text = {"text": text_pooled}
        null = {"text": self.null_text}
        if self.tokens:
            text.update(tokens=text_tokens, token_mask=attention_mask)
            null.update(tokens=self.null_tokens, token_mask=self.null_token_mask)
        return euler_sample(self.model, latent, label.long(), ts=timesteps,
                            guidance=guidance.view(-1, 1, 1, 1), null_class=self.null_class,
                            text=text, null_text=null)


class RGBADecoder(nn.Module):
    """latent -> straight RGBA uint8 NHWC (``model_to_rgba``: float32, round half up)."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, latent):
        p = ((self.codec.decode(latent) + 1) * 0.5).clamp(0, 1)
        a = p[:, 3:4]
        a8 = (a * 255 + 0.5).floor()
        rgb = ((p[:, :3] / a.clamp_min(1e-12)).clamp(max=1) * 255 + 0.5).floor()
        rgb = torch.where(a8 > 0, rgb, torch.zeros_like(rgb))
        return torch.cat([rgb, a8], 1).to(torch.uint8).permute(0, 2, 3, 1)


class RGBAEncoder(nn.Module):
    """straight RGBA uint8 NHWC -> normalised latent (``rgba_to_model``, then encode)."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, image):
        x = image.permute(0, 3, 1, 2).float() / 255.0
        x = torch.cat([x[:, :3] * x[:, 3:4], x[:, 3:4]], 1)
        return self.codec.encode(x * 2.0 - 1.0)


def trace(module, example, names_in, names_out, dynamic) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, dynamo=False, opset_version=OPSET,
                          input_names=names_in, output_names=names_out, dynamic_axes=dynamic)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return model


def loop_denoise(step: onnx.ModelProto, inputs: list[dict]) -> onnx.ModelProto:
    """denoise(latent, timesteps[K+1], ...) as one ONNX Loop of K bodies, each ``step`` on
    timesteps[i:i+2]; the other inputs and the weights are read from the outer scope."""
    g = step.graph
    rename = {"latent": "z_in", "timesteps": "tw"}
    body_nodes = [helper.make_node("Unsqueeze", ["i", "axis0"], ["i1"]),
                  helper.make_node("Add", ["i1", "two"], ["i2"]),
                  helper.make_node("Slice", ["timesteps", "i1", "i2"], ["tw"])]
    for node in g.node:
        for out in node.output:
            rename.setdefault(out, f"b/{out}")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = f"b/{node.name}"
        new.input[:] = [rename.get(x, x) for x in node.input]
        new.output[:] = [rename[x] for x in node.output]
        body_nodes.append(new)
    body_nodes += [helper.make_node("Identity", ["cond"], ["cond_out"]),
                   helper.make_node("Identity", [rename[g.output[0].name]], ["z_out"])]
    lat = inputs[0]
    shape = ["batch" if d < 0 else d for d in lat["shape"]]
    body = helper.make_graph(
        body_nodes, "step_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_in", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_out", TensorProto.FLOAT, shape)])
    consts = [helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
              helper.make_tensor("one", TensorProto.INT64, [1], [1]),
              helper.make_tensor("two", TensorProto.INT64, [1], [2])]
    nodes = [helper.make_node("Shape", ["timesteps"], ["tshape"]),
             helper.make_node("Sub", ["tshape", "one"], ["k1"]),
             helper.make_node("Squeeze", ["k1", "axis0"], ["trip"]),
             helper.make_node("Loop", ["trip", "", "latent"], ["denoised"], body=body)]
    types = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32,
             "int64": TensorProto.INT64}
    ins = [helper.make_tensor_value_info(t["name"], types[t["dtype"]],
                                         [d if s < 0 else s for s, d in zip(t["shape"], t["dims"])])
           for t in inputs]
    graph = helper.make_graph(nodes, "denoise", ins,
                              [helper.make_tensor_value_info("denoised", TensorProto.FLOAT,
                                                             shape)],
                              initializer=list(g.initializer) + consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def denoise_io(c: int, s: int, text_dim: int, tokens: bool, max_tokens: int):
    def t(n, role, dtype, shape, dims):
        return {"name": n, "role": role, "dtype": dtype, "shape": list(shape), "dims": list(dims)}

    lat = ("batch", "channels", "height", "width")
    ins = [t("latent", "latent", "float32", (-1, c, s, s), lat),
           t("timesteps", "timesteps", "float32", (-1,), ("window_plus_one",)),
           t("label", "label", "int32", (-1,), ("batch",)),
           t("guidance", "guidance", "float32", (-1,), ("batch",)),
           t("text_pooled", "text_pooled", "float32", (-1, text_dim), ("batch", "text_dim"))]
    if tokens:
        ins += [t("text_tokens", "text_tokens", "float32", (-1, max_tokens, text_dim),
                  ("batch", "max_tokens", "text_dim")),
                t("attention_mask", "attention_mask", "int64", (-1, max_tokens),
                  ("batch", "max_tokens"))]
    return ins, [t("denoised", "latent", "float32", (-1, c, s, s), lat)]


def codec_io(c: int, channels: int):
    img = {"name": "image", "role": "image", "dtype": "uint8", "shape": [-1, -1, -1, channels],
           "dims": ["batch", "image_height", "image_width", "rgba" if channels == 4 else "rgb"]}
    lat = {"name": "latent", "role": "latent", "dtype": "float32", "shape": [-1, c, -1, -1],
           "dims": ["batch", "channels", "latent_height", "latent_width"]}
    return {"decoder": ([lat], [img]), "encoder": ([img], [lat])}


def build(ckpt, null_text: dict, max_tokens: int) -> dict[str, tuple[onnx.ModelProto, tuple]]:
    """{graph name: (ONNX model, (inputs, outputs))} for denoise, decoder and encoder."""
    cfg = ckpt.config
    c, s = cfg.latent_channels, cfg.latent_size
    tokens = bool(cfg.text_attention)
    channels = int(ckpt.codec.ae.config.in_channels)
    if channels != 4:
        raise ValueError("a text bundle's codec must be RGBA (4 image channels), got "
                         f"{channels}")
    den_io = denoise_io(c, s, cfg.text_dim, tokens, max_tokens)
    z = torch.randn(2, c, s, s)
    ex = [z, torch.tensor([1.0, 0.5]), torch.zeros(2, dtype=torch.int32), torch.full((2,), 3.0),
          torch.nn.functional.normalize(torch.randn(2, cfg.text_dim), dim=-1)]
    if tokens:
        ex += [torch.randn(2, max_tokens, cfg.text_dim), torch.ones(2, max_tokens,
                                                                     dtype=torch.int64)]
    names = [t["name"] for t in den_io[0]]
    step = trace(TextDenoiseStep(ckpt.model, cfg.null_class, null_text, tokens).eval(),
                 tuple(ex), names, ["out"], {**{n: {0: "batch"} for n in names
                                               if n != "timesteps"}, "out": {0: "batch"}})
    io = codec_io(c, channels)
    hw = {0: "batch", 1: "ih", 2: "iw"}
    lhw = {0: "batch", 2: "lh", 3: "lw"}
    dec = trace(RGBADecoder(ckpt.codec).eval(), (z,), ["latent"], ["image"],
                {"latent": lhw, "image": hw})
    img = torch.zeros(2, 8 * s, 8 * s, channels, dtype=torch.uint8)
    enc = trace(RGBAEncoder(ckpt.codec).eval(), (img,), ["image"], ["latent"],
                {"image": hw, "latent": lhw})
    return {"denoise": (loop_denoise(step, den_io[0]), den_io),
            "decoder": (dec, io["decoder"]), "encoder": (enc, io["encoder"])}
