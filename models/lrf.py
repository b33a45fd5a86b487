"""LatentRecurrentFlow (LRF v2): a recursive, weight-shared latent denoiser.

Structure (shapes for the cifar10 preset: B batch, 4x4 latent, N=16 tokens, D=128):

    latent [B,4,H,W] --1x1 patch embed--> tokens [B,N,D]
    cond   = MLP(sin(t)) + class_embed[label]                      [B,D]
    for r in range(recursions):            # the same blocks every time
        c_r = cond + recursion_embed[r]
        for block in blocks:               # 4 blocks, weight-shared across recursions
            x = block(x, c_r)              # adaLN-Zero: mixer (attention + dwconv), then MLP
    out = final adaLN + linear -> velocity [B,4,H,W]

The spatial mixer is gated attention over the HxW tokens plus a depthwise 3x3 convolution for
locality. Exact softmax attention is used at <= ``softmax_max_tokens`` tokens and linear
attention (positive feature map elu+1) above; the choice is a Python branch on static shapes,
so each exported graph holds one path and both trace.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from lrf.models.config import LRFConfig, timestep_frequencies


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


################################################################################
#                               Spatial mixer                                  #
################################################################################

class SpatialMixer(nn.Module):
    """Gated attention over tokens (softmax or linear by token count) + depthwise conv."""

    def __init__(self, cfg: LRFConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.qkv = nn.Linear(d, 3 * d)
        self.gate = nn.Linear(d, d)
        self.dwconv = nn.Conv2d(d, d, cfg.conv_kernel, padding=cfg.conv_kernel // 2, groups=d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, h: int, w: int):
        b, n, d = x.shape                                             # [B,N,D]
        nh, hd = self.cfg.heads, self.cfg.head_dim
        q, k, v = self.qkv(x).view(b, n, 3, nh, hd).permute(2, 0, 3, 1, 4)  # 3 x [B,nh,N,hd]
        if self.cfg.uses_softmax(h, w):
            attn = (q @ k.transpose(-2, -1)) * hd ** -0.5             # [B,nh,N,N]
            y = attn.softmax(dim=-1) @ v                              # [B,nh,N,hd]
        else:
            q, k = F.elu(q) + 1, F.elu(k) + 1                         # positive feature map
            kv = k.transpose(-2, -1) @ v                              # [B,nh,hd,hd]: O(N)
            norm = q @ k.sum(dim=2, keepdim=True).transpose(-2, -1)   # [B,nh,N,1]
            y = (q @ kv) / (norm + 1e-6)                              # [B,nh,N,hd]
        y = y.transpose(1, 2).reshape(b, n, d)                        # [B,N,D]
        grid = x.transpose(1, 2).reshape(b, d, h, w)                  # [B,D,H,W]
        local = self.dwconv(grid).flatten(2).transpose(1, 2)          # [B,N,D]
        return self.proj((y + local) * torch.sigmoid(self.gate(x)))   # [B,N,D]


################################################################################
#                                  Block                                       #
################################################################################

class TextCrossAttention(nn.Module):
    """Tokens attend to the prompt's projected token states (padding masked out); the output
    projection starts at zero, so a new block starts as the pooled-only model."""

    def __init__(self, cfg: LRFConfig):
        super().__init__()
        d = cfg.dim
        self.heads = cfg.heads
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, ctx, ctx_mask):
        b, n, d = x.shape                                             # [B,N,D]
        nh, hd = self.heads, d // self.heads
        q = self.q(self.norm(x)).view(b, n, nh, hd).transpose(1, 2)   # [B,nh,N,hd]
        k, v = self.kv(ctx).view(b, -1, 2, nh, hd).permute(2, 0, 3, 1, 4)  # 2 x [B,nh,L,hd]
        attn = (q @ k.transpose(-2, -1)) * hd ** -0.5                 # [B,nh,N,L]
        attn = attn.masked_fill(ctx_mask[:, None, None, :] == 0, float("-inf"))
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)   # [B,N,D]
        return self.proj(y)


class LRFBlock(nn.Module):
    def __init__(self, cfg: LRFConfig):
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mixer = SpatialMixer(cfg)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.mlp_hidden, d))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))     # shift/scale/gate x2
        self.xattn = TextCrossAttention(cfg) if cfg.text_attention else None

    def forward(self, x, c, h: int, w: int, ctx=None, ctx_mask=None):
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=-1)       # 6 x [B,D]
        x = x + g1.unsqueeze(1) * self.mixer(modulate(self.norm1(x), s1, sc1), h, w)
        if self.xattn is not None:
            x = x + self.xattn(x, ctx, ctx_mask)
        x = x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, sc2))
        return x                                                      # [B,N,D]


################################################################################
#                              Conditioning                                    #
################################################################################

class TimestepEmbedder(nn.Module):
    """A scalar s -> sinusoidal features of ``scale`` * s -> MLP. t in [0, 1] uses scale 1000;
    the turbo student's guidance w (about 0-10) uses 100 and its step size d in (0, 1] 1000."""

    def __init__(self, cfg: LRFConfig, scale: float = 1000.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("freqs", torch.tensor(timestep_frequencies(cfg.freq_dim)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(),
                                 nn.Linear(cfg.dim, cfg.dim))

    def forward(self, t):
        args = (t.float() * self.scale)[:, None] * self.freqs[None]   # [B,F/2]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))  # [B,D]


################################################################################
#                                 Model                                        #
################################################################################

class LRFModel(ModelMixin, ConfigMixin):
    """The LRF core. Built from an :class:`LRFConfig`'s fields (diffusers ConfigMixin keeps them
    in ``config.json``); ``forward(latent, t, label)`` returns the velocity eps - z0."""

    @register_to_config
    def __init__(self, **kwargs):
        super().__init__()
        cfg = self.cfg = LRFConfig.from_dict(kwargs)
        d = cfg.dim
        self.patch = nn.Conv2d(cfg.latent_channels, d, 1)
        self.t_embed = TimestepEmbedder(cfg)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, d)       # last row: null class
        # Turbo students only (absent from teacher checkpoints): zero-initialised, so a student
        # built from a teacher's weights starts as that teacher's conditional branch.
        self.guidance_embed = TimestepEmbedder(cfg, scale=100.0) if cfg.guidance_embed else None
        self.step_embed = TimestepEmbedder(cfg) if cfg.step_embed else None
        # Text models only: the pooled prompt embedding joins the conditioning; with
        # text_attention the token states are projected once per call for the cross-attention.
        self.text_embed = (nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
                           if cfg.text_dim else None)
        self.text_ctx = nn.Linear(cfg.text_dim, d) if cfg.text_attention else None
        self.recursion_embed = nn.Parameter(torch.zeros(cfg.recursions, d))
        self.blocks = nn.ModuleList(LRFBlock(cfg) for _ in range(cfg.num_blocks))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, cfg.latent_channels)
        self.initialize_weights()

    @classmethod
    def from_lrf_config(cls, cfg: LRFConfig) -> "LRFModel":
        return cls(**cfg.to_dict())

    def initialize_weights(self):
        """DiT-style: Xavier linears, small embeddings, zero-init every modulation and the output
        projection so the untrained model is the identity per block and predicts zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.class_embed.weight, std=0.02)
        nn.init.normal_(self.recursion_embed, std=0.02)
        for mlp in (self.t_embed.mlp,):
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)
        for emb in (self.guidance_embed, self.step_embed):
            if emb is not None:
                nn.init.normal_(emb.mlp[0].weight, std=0.02)
                nn.init.zeros_(emb.mlp[2].weight)
                nn.init.zeros_(emb.mlp[2].bias)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
            if blk.xattn is not None:
                nn.init.zeros_(blk.xattn.proj.weight)
        for lin in (self.final_ada[-1], self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def conditioning(self, t, label, guidance=None, step=None, text=None):
        c = self.t_embed(t) + self.class_embed(label)                 # [B,D]
        if self.text_embed is not None:
            if text is None:
                raise ValueError("this LRF core is text-conditioned: pass text=[B, "
                                 f"{self.cfg.text_dim}] (the pooled prompt embedding)")
            c = c + self.text_embed(text.float())
        if self.guidance_embed is not None:
            if guidance is None:
                raise ValueError("this LRF core is guidance-distilled: pass guidance=[B] "
                                 "(and step=[B], the Euler step size)")
            c = c + self.guidance_embed(guidance)
            if self.step_embed is not None:
                c = c + self.step_embed(torch.zeros_like(t) if step is None else step)
        return c

    def forward(self, latent, t, label, guidance=None, step=None, text=None, tokens=None,
                token_mask=None):
        """Velocity for latent [B,C,H,W] at times t [B]; a turbo student also takes its guidance
        scale w [B] and step size d [B] (teachers ignore both: guidance is applied outside).
        A text model takes the pooled prompt embedding ``text`` [B,T] and, with
        ``text_attention``, the prompt's token states ``tokens`` [B,L,T] and mask [B,L]."""
        b, _, h, w = latent.shape                                     # [B,C,H,W]
        x = self.patch(latent).flatten(2).transpose(1, 2)             # [B,N,D]
        c = self.conditioning(t, label, guidance, step, text)         # [B,D]
        ctx = None
        if self.text_ctx is not None:
            if tokens is None or token_mask is None:
                raise ValueError("this LRF core attends to the prompt: pass tokens=[B, L, "
                                 f"{self.cfg.text_dim}] and token_mask=[B, L]")
            ctx = self.text_ctx(tokens)                               # [B,L,D]
        last = self.cfg.recursions - 1
        for r in range(self.cfg.recursions):
            # Earlier recursions run without autograd when asked: gradients then flow through
            # the last recursion only, so training memory does not grow with `recursions`.
            detach = self.cfg.grad_last_recursion_only and self.training and r < last
            with torch.no_grad() if detach else contextlib.nullcontext():
                c_r = c + self.recursion_embed[r]
                for blk in self.blocks:
                    x = blk(x, c_r, h, w, ctx, token_mask)
        s, sc = self.final_ada(c).chunk(2, dim=-1)
        x = self.out(modulate(self.final_norm(x), s, sc))             # [B,N,C]
        return x.transpose(1, 2).reshape(b, -1, h, w)                 # [B,C,H,W]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
