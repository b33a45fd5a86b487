"""The LRF v2 core: preset size, shapes, weight sharing, recursion, attention paths, init."""

import pytest
import torch

from lrf.models.config import LRFConfig, PRESETS, get_preset
from lrf.models.lrf import LRFModel, SpatialMixer, count_parameters


def _randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_cifar10_preset_parameter_count():
    m = LRFModel.from_lrf_config(get_preset("cifar10"))
    n = count_parameters(m)
    assert 1_400_000 <= n <= 1_540_000, n
    assert m.class_embed.weight.shape == (11, 128)  # 10 classes + null
    cfg = m.cfg
    assert (cfg.latent_channels, cfg.latent_size, cfg.num_classes) == (4, 4, 10)
    assert (cfg.num_blocks, cfg.recursions) == (4, 2)


@pytest.mark.parametrize("size", [4, 64])
def test_shapes(size):
    m = _randomize(LRFModel.from_lrf_config(get_preset("cifar10"))).eval()
    x = torch.randn(2, 4, size, size)
    with torch.no_grad():
        v = m(x, torch.tensor([0.3, 0.9]), torch.tensor([1, 10]))
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_attention_path_is_chosen_by_token_count():
    cfg = get_preset("cifar10")
    assert cfg.uses_softmax(4, 4) and cfg.uses_softmax(16, 16)
    assert not cfg.uses_softmax(32, 32) and not cfg.uses_softmax(64, 64)


def test_linear_attention_matches_quadratic_form():
    """The O(N) path equals sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)."""
    cfg = LRFConfig(dim=16, heads=2, mlp_hidden=16, freq_dim=16, softmax_max_tokens=0)
    mix = _randomize(SpatialMixer(cfg))
    x = torch.randn(1, 36, 16)
    got = mix(x, 6, 6)
    b, n, d = x.shape
    q, k, v = mix.qkv(x).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
    q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    a = q @ k.transpose(-2, -1)
    y = (a / a.sum(-1, keepdim=True)) @ v
    y = y.transpose(1, 2).reshape(b, n, d)
    local = mix.dwconv(x.transpose(1, 2).reshape(1, d, 6, 6)).flatten(2).transpose(1, 2)
    want = mix.proj((y + local) * torch.sigmoid(mix.gate(x)))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [4, 8])  # 16 tokens: softmax; 64 tokens: linear (tiny: <=16)
def test_both_attention_paths_export(size):
    cfg = LRFConfig(dim=16, heads=2, mlp_hidden=16, freq_dim=16, softmax_max_tokens=16,
                    num_blocks=1, recursions=2)
    m = _randomize(LRFModel.from_lrf_config(cfg)).eval()
    args = (torch.randn(1, 4, size, size), torch.tensor([0.5]), torch.tensor([2]))
    ep = torch.export.export(m, args)
    torch.testing.assert_close(ep.module()(*args), m(*args))
    has_softmax = any("softmax" in str(n.target) for n in ep.graph.nodes)
    assert has_softmax == cfg.uses_softmax(size, size)


def test_blocks_are_shared_across_recursions():
    base = dict(dim=32, heads=2, mlp_hidden=32, freq_dim=32, num_blocks=3)
    m2 = LRFModel(**{**base, "recursions": 2})
    m5 = LRFModel(**{**base, "recursions": 5})
    assert len(m2.blocks) == len(m5.blocks) == 3
    # only the per-recursion embedding grows with the recursion count
    assert count_parameters(m5) - count_parameters(m2) == 3 * 32
    calls = []
    for blk in m5.blocks:
        blk.register_forward_hook(lambda mod, i, o: calls.append(id(mod)))
    m5(torch.randn(1, 4, 4, 4), torch.tensor([0.5]), torch.tensor([0]))
    assert len(calls) == 15 and len(set(calls)) == 3


def test_zero_init_predicts_zero():
    m = LRFModel.from_lrf_config(get_preset("tiny"))
    v = m(torch.randn(2, 4, 4, 4), torch.tensor([0.2, 0.7]), torch.tensor([0, 3]))
    assert torch.count_nonzero(v) == 0
    for blk in m.blocks:
        assert torch.count_nonzero(blk.ada[-1].weight) == 0


def test_o1_memory_recursion_builds_no_graph_for_earlier_passes():
    cfg = LRFConfig(dim=32, heads=2, mlp_hidden=32, freq_dim=32, num_blocks=2, recursions=3,
                    grad_last_recursion_only=True)
    m = _randomize(LRFModel.from_lrf_config(cfg)).train()
    seen = []
    for blk in m.blocks:
        blk.register_forward_hook(lambda mod, i, o: seen.append((o.requires_grad, o.grad_fn)))
    out = m(torch.randn(2, 4, 4, 4), torch.tensor([0.3, 0.6]), torch.tensor([1, 2]))
    assert [r for r, _ in seen] == [False] * 4 + [True] * 2
    assert all(fn is None for _, fn in seen[:4])
    out.square().mean().backward()
    assert all(p.grad is not None for p in m.blocks.parameters())
    # without the option, every pass is on the graph
    m_full = LRFModel(**{**cfg.to_dict(), "grad_last_recursion_only": False}).train()
    seen.clear()
    for blk in m_full.blocks:
        blk.register_forward_hook(lambda mod, i, o: seen.append((o.requires_grad, o.grad_fn)))
    m_full(torch.randn(2, 4, 4, 4), torch.tensor([0.3, 0.6]), torch.tensor([1, 2]))
    assert all(r for r, _ in seen)


def test_seeded_determinism():
    def build():
        torch.manual_seed(123)
        return _randomize(LRFModel.from_lrf_config(get_preset("tiny")), seed=5)
    a, b = build(), build()
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    t, y = torch.tensor([0.4, 0.8]), torch.tensor([1, 2])
    assert torch.equal(a(x, t, y), b(x, t, y))


@pytest.mark.parametrize("bad", [dict(dim=30, heads=4), dict(num_blocks=0), dict(recursions=-1),
                                 dict(conv_kernel=2), dict(freq_dim=7), dict(latent_size=True)])
def test_config_validation(bad):
    with pytest.raises(ValueError, match="LRFConfig"):
        LRFConfig(**bad)


def test_unknown_preset_and_key():
    with pytest.raises(ValueError, match="cifar10"):
        get_preset("imagenet")
    with pytest.raises(ValueError, match="'width'"):
        LRFConfig.from_dict({"width": 3})
    assert set(PRESETS) >= {"cifar10", "tiny"}
