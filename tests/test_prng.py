"""The portable PRNG (lrf/prng.py) against an independent pure-Python reading of its SPEC."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from lrf.exporter.golden import rng_vectors
from lrf import prng

MASK = 2**64 - 1


def ref_word(seed: int, i: int) -> int:
    """SplitMix64, counter form, with Python ints (the spec written out again)."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def ref_uniform(seed: int, i: int) -> float:
    return ((ref_word(seed, i) >> 40) + 1) * 2.0**-24


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


@pytest.mark.parametrize("seed", [0, 1, 42, 123456789, 2**63, 2**64 - 1])
def test_words_and_uniforms_bit_exact(seed):
    n = 37
    assert [int(w) for w in prng.words(seed, n)] == [ref_word(seed, i) for i in range(n)]
    u = prng.uniform(seed, n)
    assert u.dtype == np.float32
    assert [float(v) for v in u] == [ref_uniform(seed, i) for i in range(n)]
    assert (u > 0).all() and (u <= 1).all()


def test_splitmix64_known_value():
    # The first SplitMix64 output for state 0 (widely published: 0xE220A8397B1DCDAF).
    assert int(prng.words(0, 1)[0]) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_normals_follow_box_muller(n):
    seed = 99
    out = prng.normal(seed, n)
    assert out.dtype == np.float32 and out.shape == (n,)
    ref = []
    for j in range((n + 1) // 2):
        u1, u2 = ref_uniform(seed, 2 * j), ref_uniform(seed, 2 * j + 1)
        r, th = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
        ref += [f32(r * math.cos(th)), f32(r * math.sin(th))]
    np.testing.assert_allclose(out, np.asarray(ref[:n], dtype=np.float32), rtol=0, atol=1e-6)


def test_noise_one_seed_per_image_and_layout():
    shape = (4, 3, 5)
    batch = prng.noise([7, 8], shape)
    assert batch.shape == (2, *shape) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], prng.noise([8], shape)[0])  # batch-independent
    np.testing.assert_array_equal(batch[0].reshape(-1), prng.normal(7, 60))  # row-major C,H,W
    assert not np.array_equal(batch[0], batch[1])


def test_normal_statistics():
    x = prng.normal(5, 200_000).astype(np.float64)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert np.isfinite(x).all()


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, True, "3"])
def test_bad_seed_rejected(bad):
    with pytest.raises(ValueError, match="seed must be an integer"):
        prng.words(bad, 4)


def test_golden_rng_vectors_match_spec():
    """The vectors a bundle ships, read as the apps read them (plain JSON), against the
    reference above: words and uniforms bit for bit, normals by Box-Muller within 1e-6."""
    vec = json.loads(json.dumps(rng_vectors()))
    # the spec names the algorithm the reference implements (its constants written here again)
    assert vec["spec"]["name"] == "splitmix64-boxmuller" and vec["spec"]["version"] == 1
    assert "0x9E3779B97F4A7C15" in vec["spec"]["uniform"] and ">> 40" in vec["spec"]["uniform"]
    assert len(vec["vectors"]) >= 2
    for v in vec["vectors"]:
        assert isinstance(v["seed"], str)          # uint64 seeds travel as decimal strings
        s = int(v["seed"])
        assert v["words_hex"] == [f"0x{ref_word(s, i):016x}" for i in range(len(v["words_hex"]))]
        bits = [struct.unpack("<I", struct.pack("<f", ref_uniform(s, i)))[0]
                for i in range(len(v["uniform_bits"]))]
        assert v["uniform_bits"] == bits and v["uniform"] == [ref_uniform(s, i) for i in
                                                              range(len(v["uniform"]))]
        ref = []
        for j in range((len(v["normal"]) + 1) // 2):
            u1, u2 = ref_uniform(s, 2 * j), ref_uniform(s, 2 * j + 1)
            r, th = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
            ref += [f32(r * math.cos(th)), f32(r * math.sin(th))]
        np.testing.assert_allclose(v["normal"], ref[:len(v["normal"])], rtol=0, atol=1e-6)
        # the JSON numbers are exactly the float32 values whose bits are listed beside them
        assert [struct.unpack("<I", struct.pack("<f", x))[0] for x in v["normal"]] == \
            v["normal_bits"]
