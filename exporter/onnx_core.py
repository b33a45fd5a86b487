"""The LRF core re-expressed for a small ONNX graph: the same weights and the same math as
``lrf.models.lrf.LRFModel.forward``, arranged so one denoising step runs as few onnxruntime
kernels as possible (``lrf.exporter.onnx_compose`` puts these pieces in the ``denoise`` Loop).

* :class:`CondGraph` runs once per ``denoise`` call, before the loop: the timestep (and, for a
  turbo core, the step-size) embeddings of every step of the window, plus the class (and
  guidance) embedding: ``cond [K, B', 1, 1, D]``, B' = 2B for a teacher (conditional rows, then the
  null class), B for a turbo core.
* :class:`BodyGraph` is one velocity evaluation given step i's ``cond`` row:
  - every adaLN modulation of every block and recursion comes from ONE MatMul plus one Split
    (the conditioning is constant within a step); the "+1" of ``x * (1 + scale)`` is folded
    into the scale biases;
  - tokens stay ``[B', 1, N, D]`` (rank 4, so no Reshape/Gemm/Reshape around each linear);
    q, k, v and the mixer's gate come out of ONE 2-D MatMul ``[D, 4D]`` (the softmax scale
    folded into the q columns), so the int8 exporter can run it as one integer matmul; q, k, v
    then take one Reshape + Transpose + Split into heads;
  - at small token counts the depthwise 3x3 convolution is a constant shift matrix applied by
    one MatMul (no layout changes, no NCHWc reorders); its bias is folded into v (softmax rows
    sum to one); larger grids use the Conv;
  - LayerNormalization and Gelu(approximate="tanh") are single opset-20 operators.

``tests/test_export_onnx.py`` pins both pieces to ``LRFModel`` / ``guided_velocity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHIFT_MATMUL_MAX_TOKENS = 64  # above this the [N, 9N] shift matrix outgrows the conv weights


def _lin(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [in, out], b [out]) in float64 for exact folding."""
    return layer.weight.detach().double().t(), layer.bias.detach().double()


def shift_matrix(h: int, w: int, k: int) -> torch.Tensor:
    """S [N, k*k*N] with S[p, o*N + q] = 1 when token q is token p's neighbour at kernel offset o
    (cross-correlation with zero padding k // 2, as ``nn.Conv2d``)."""
    n, r = h * w, k // 2
    s = torch.zeros(n, k * k * n)
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for b in range(k):
                    y, x = i + a - r, j + b - r
                    if 0 <= y < h and 0 <= x < w:
                        s[i * w + j, (a * k + b) * n + y * w + x] = 1.0
    return s


class CondGraph(nn.Module):
    """(timesteps [K+1] f32, label [B] i32, guidance [B] f32) -> cond [K, B', 1, 1, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.turbo = bool(model.cfg.guidance_embed)
        self.null_class = model.cfg.null_class

    def forward(self, timesteps, label, guidance):
        m = self.model
        t = timesteps[:-1]                                            # [K]
        temb = m.t_embed(t)                                           # [K,D]
        label = label.long()
        if self.turbo:
            cls = m.class_embed(label) + m.guidance_embed(guidance)   # [B,D]
            if m.step_embed is not None:
                temb = temb + m.step_embed(t - timesteps[1:])         # d_i = t_i - t_{i+1}
        else:
            cls = m.class_embed(torch.cat([label, torch.full_like(label, self.null_class)]))
        return (temb[:, None, :] + cls[None])[:, :, None, None]       # [K,B',1,1,D]


class BodyGraph(nn.Module):
    """(z [B,1,N,C] tokens, cond [B',1,1,D] (step i's row), guidance [B,1,1,1]) -> velocity
    [B,1,N,C].

    A teacher evaluates the conditional and unconditional branches in one batch of 2B and
    returns v_u + g (v_c - v_u); a turbo core's conditioning already holds g (``guidance`` is
    then unused and not exported)."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        cfg = self.cfg = model.cfg
        d, nh, hd = cfg.dim, cfg.heads, cfg.head_dim
        self.turbo = bool(cfg.guidance_embed)
        self.n, self.h, self.w = height * width, height, width
        self.softmax = cfg.uses_softmax(height, width)
        self.shift_mm = self.n <= SHIFT_MATMUL_MAX_TOKENS
        f32 = torch.float32

        def buf(name, value):
            self.register_buffer(name, value.to(f32).contiguous(), persistent=False)

        # --- every modulation: rows r < R use the blocks' columns, row R the final layer's
        rec = model.recursion_embed.detach()
        buf("rec", torch.cat([rec, torch.zeros(1, d)]))               # [R+1,D]
        cols, bias, self.sizes = [], [], []
        for blk in model.blocks:
            wa, ba = _lin(blk.ada[1])                                 # [D,6D]: s1 sc1 g1 s2 sc2 g2
            plus_one = torch.zeros(6 * d, dtype=torch.float64)
            plus_one[d:2 * d] = plus_one[4 * d:5 * d] = 1             # x * (1 + scale)
            cols.append(wa)
            bias.append(ba + plus_one)
            self.sizes += [d] * 6
        wf, bf = _lin(model.final_ada[1])                             # [D,2D]
        cols += [wf[:, :d], wf[:, d:]]
        bias += [bf[:d], bf[d:] + 1]
        self.sizes += [d, d]
        self.mod_flat = sum(self.sizes) * (cfg.recursions + 1)
        buf("mod_w", torch.cat(cols, 1))                              # [D,M]
        buf("mod_b", torch.cat(bias))                                 # [M]
        # --- per-block weights
        scale = hd ** -0.5 if self.softmax else 1.0
        for j, blk in enumerate(model.blocks):
            mx = blk.mixer
            wqkv, bqkv = _lin(mx.qkv)                                 # [D,3D]: (q k v, head, hd)
            wg, bg = _lin(mx.gate)
            conv_b = mx.dwconv.bias.detach().double()                 # [D]
            bv = bqkv[2 * d:] + (conv_b if self.softmax else 0)       # softmax rows sum to 1
            buf(f"b{j}_qkvg_w", torch.cat([wqkv[:, :d] * scale, wqkv[:, d:], wg], 1))  # [D,4D]
            buf(f"b{j}_qkvg_b", torch.cat([bqkv[:d] * scale, bqkv[d:2 * d], bv, bg]))
            if not self.softmax:
                buf(f"b{j}_conv_b", conv_b)
            kw = mx.dwconv.weight.detach()                            # [D,1,k,k]
            if self.shift_mm:
                buf(f"b{j}_dw", kw.flatten(1).t().reshape(-1, 1, d))  # [k*k,1,D]
            else:
                buf(f"b{j}_dw", kw)
            for name, layer in (("proj", mx.proj), ("fc1", blk.mlp[0]),
                                ("fc2", blk.mlp[2])):
                w_, b_ = _lin(layer)
                buf(f"b{j}_{name}_w", w_)
                buf(f"b{j}_{name}_b", b_)
        if self.shift_mm:
            buf("shift", shift_matrix(height, width, cfg.conv_kernel))  # [N,k*k*N]
        buf("patch_w", model.patch.weight.detach()[:, :, 0, 0].t())   # [C,D]
        buf("patch_b", model.patch.bias.detach())
        wo, bo = _lin(model.out)
        buf("out_w", wo)
        buf("out_b", bo)

    def _local(self, j, h):
        """Depthwise conv of the modulated tokens h [B',1,N,D]."""
        d = self.cfg.dim
        if self.shift_mm:
            taps = (h * getattr(self, f"b{j}_dw")).reshape(-1, 1, self.shift.shape[1], d)
            local = self.shift @ taps                                 # [B',1,N,D]
        else:
            grid = h.reshape(-1, self.n, d).transpose(1, 2).reshape(-1, d, self.h, self.w)
            k = self.cfg.conv_kernel
            local = F.conv2d(grid, getattr(self, f"b{j}_dw"), padding=k // 2, groups=d)
            local = local.reshape(-1, d, self.n).transpose(1, 2).reshape(-1, 1, self.n, d)
        return local if self.softmax else local + getattr(self, f"b{j}_conv_b")

    def _block(self, j, x, mods):
        d, nh = self.cfg.dim, self.cfg.heads
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        p = lambda name: getattr(self, f"b{j}_{name}")  # noqa: E731
        h = F.layer_norm(x, (d,), eps=1e-6) * scale1 + shift1        # [B',1,N,D]
        qkv, gate = torch.split(h @ p("qkvg_w") + p("qkvg_b"), [3 * d, d], dim=-1)
        qkv = qkv.reshape(-1, self.n, 3 * nh, self.cfg.head_dim).transpose(1, 2)  # [B',3nh,N,hd]
        q, k, v = torch.split(qkv, nh, dim=1)                        # 3 x [B',nh,N,hd]
        if self.softmax:
            y = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v    # [B',nh,N,hd]
        else:
            q, k = F.elu(q) + 1, F.elu(k) + 1
            norm = q @ k.sum(dim=2, keepdim=True).transpose(-2, -1)
            y = (q @ (k.transpose(-2, -1) @ v)) / (norm + 1e-6)
        y = y.transpose(1, 2).reshape(-1, 1, self.n, d)               # [B',1,N,D]
        mixed = ((y + self._local(j, h)) * torch.sigmoid(gate)) @ p("proj_w") + p("proj_b")
        x = x + gate1 * mixed
        h = F.layer_norm(x, (d,), eps=1e-6) * scale2 + shift2
        mlp = F.gelu(h @ p("fc1_w") + p("fc1_b"), approximate="tanh") @ p("fc2_w") + p("fc2_b")
        return x + gate2 * mlp

    def forward(self, z, cond, guidance):
        cfg = self.cfg
        u = F.silu(cond + self.rec)                                   # [B',1,R+1,D]
        mods = torch.split((u @ self.mod_w + self.mod_b).reshape(-1, 1, 1, self.mod_flat),
                           self.sizes * (cfg.recursions + 1), dim=-1)
        per_row = len(self.sizes)
        x = z @ self.patch_w + self.patch_b                           # [B,1,N,D]
        if not self.turbo:
            x = torch.cat([x, x])                                     # [2B,1,N,D]
        for r in range(cfg.recursions):
            row = mods[r * per_row:(r + 1) * per_row]
            for j in range(cfg.num_blocks):
                x = self._block(j, x, row[6 * j:6 * j + 6])
        shift_f, scale_f = mods[cfg.recursions * per_row + per_row - 2:
                                cfg.recursions * per_row + per_row]
        h = F.layer_norm(x, (cfg.dim,), eps=1e-6) * scale_f + shift_f
        v = h @ self.out_w + self.out_b                               # [B',1,N,C]
        if self.turbo:
            return v
        v = v.reshape(2, -1, 1, self.n, cfg.latent_channels)
        v_cond, v_uncond = v[0], v[1]
        return v_uncond + guidance * (v_cond - v_uncond)              # [B,1,N,C]
