"""Behaviour of the augment package: distributions, transformations, the Augmentor, specs."""

import json
import re
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.transform import Rotation as ScipyRotation

from pointseq.augment import (
    Augmentor,
    Constant,
    Jitter,
    Normal,
    Rotation,
    Scale,
    Uniform,
    distribution_from_spec,
    random_unit_axes,
    rotation_matrices,
    transformation_from_spec,
)

ROOT = Path(__file__).resolve().parents[1]


def cloud(batch=4, points=50, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(batch, points, 3)).astype(dtype)


def pairwise_distances(points):
    """(B, N, 3) -> (B, N, N)."""
    diff = points[:, :, None, :].astype(np.float64) - points[:, None, :, :]
    return np.linalg.norm(diff, axis=-1)


def run(augmentor, coords, seed=0, vectors=()):
    return augmentor(coords, np.random.default_rng(seed), vectors=vectors)


# ----------------------------------------------------------------- distributions
class TestDistributions:
    def test_uniform_range_dtype_and_mean(self):
        values = Uniform(-2.0, 3.0).sample(np.random.default_rng(0), 100_000)
        assert values.dtype == np.float64 and values.shape == (100_000,)
        assert values.min() >= -2.0 and values.max() < 3.0
        assert values.mean() == pytest.approx(0.5, abs=0.03)
        values32 = Uniform(1.0, 2.0).sample(np.random.default_rng(0), (10, 3), dtype=np.float32)
        assert values32.dtype == np.float32 and values32.shape == (10, 3)
        assert values32.min() >= 1.0 and values32.max() <= 2.0

    @pytest.mark.parametrize("dtype", [np.float64, np.float32])
    def test_normal_moments_and_shape_of_distribution(self, dtype):
        values = Normal(0.5, 2.0).sample(np.random.default_rng(3), 200_000, dtype=dtype)
        assert values.dtype == dtype
        assert values.mean() == pytest.approx(0.5, abs=0.03)
        assert values.std() == pytest.approx(2.0, rel=0.03)
        standardised = (values.astype(np.float64) - 0.5) / 2.0
        assert stats.kstest(standardised, "norm").pvalue > 1e-3
        assert stats.kurtosis(standardised, fisher=False) == pytest.approx(3.0, abs=0.1)

    def test_normal_float32_is_the_quantile_table_within_its_stated_bounds(self):
        values = Normal(0.0, 1.0).sample(np.random.default_rng(4), 1_000_000, dtype=np.float32)
        # 2**16 equal-probability levels: Kolmogorov-Smirnov distance at most 2**-17 plus sampling error
        assert stats.kstest(values.astype(np.float64), "norm").statistic < 2.0 ** -17 + 2e-3
        assert np.unique(values).size <= 1 << 16
        assert np.abs(values).max() <= Normal(0.0, 1.0).largest_magnitude(np.float32)
        assert Normal(0.0, 1.0).largest_magnitude(np.float32) == pytest.approx(4.33, abs=0.01)
        assert Normal(0.5, 2.0).largest_magnitude(np.float32) == pytest.approx(0.5 + 2 * 4.33, abs=0.03)
        assert Normal(0.0, 1.0).largest_magnitude(np.float64) == math.inf
        assert Uniform(-3, 2).largest_magnitude() == 3 and Constant(-1.5).largest_magnitude() == 1.5

    def test_normal_float32_odd_count_and_zero_stdev(self):
        rng = np.random.default_rng(0)
        assert Normal(0, 1).sample(rng, (3, 5), dtype=np.float32).shape == (3, 5)
        assert np.all(Normal(1.5, 0.0).sample(rng, 7, dtype=np.float32) == 1.5)

    def test_constant(self):
        values = Constant(2.5).sample(np.random.default_rng(0), (2, 3))
        np.testing.assert_array_equal(values, np.full((2, 3), 2.5))

    def test_from_spec_forms(self):
        assert distribution_from_spec({"type": "uniform", "start": 1, "end": 2}) == Uniform(1, 2)
        assert distribution_from_spec({"type": "Normal", "mean": 0, "stdev": 1}) == Normal(0, 1)
        assert distribution_from_spec({"type": "GAUSSIAN", "mean": 0, "stdev": 1}) == Normal(0, 1)
        assert distribution_from_spec({"type": "constant", "value": 3}) == Constant(3)
        assert distribution_from_spec(4) == Constant(4.0)
        dist = Uniform(0, 1)
        assert distribution_from_spec(dist) is dist

    @pytest.mark.parametrize("dist", [Uniform(-1, 2), Normal(0.5, 0.1), Constant(7)])
    def test_to_spec_round_trips_through_json(self, dist):
        assert distribution_from_spec(json.loads(json.dumps(dist.to_spec()))) == dist

    @pytest.mark.parametrize(
        "make, match",
        [
            (lambda: Uniform(2, 1), r"Uniform start must be <= end, got start=2 > end=1"),
            (lambda: Normal(0, -1), r"Normal stdev must be >= 0, got -1"),
            (lambda: Uniform(float("nan"), 1), r"Uniform start must be a finite real number"),
            (lambda: Constant("a"), r"Constant value must be a finite real number, got 'a'"),
            (
                lambda: distribution_from_spec({"type": "beta", "a": 1}),
                r"unknown type 'beta'; "
                r"known types: \['constant', 'gaussian', 'normal', 'uniform'\]",
            ),
            (
                lambda: distribution_from_spec({"type": "uniform", "start": 0}),
                r"missing required key\(s\) \['end'\]",
            ),
            (
                lambda: distribution_from_spec({"type": "normal"}),
                r"missing required key\(s\) \['mean', 'stdev'\]",
            ),
            (
                lambda: distribution_from_spec({"type": "normal", "mean": 0, "std": 1}),
                r"unknown key\(s\) \['std'\].*valid keys: \['type', 'mean', 'stdev'\]",
            ),
            (lambda: distribution_from_spec([1, 2]), r"distribution spec must be .* got list"),
            (lambda: distribution_from_spec({"start": 0}), r"unknown type None"),
        ],
    )
    def test_bad_distributions(self, make, match):
        with pytest.raises(Exception, match=match) as raised:
            make()
        type_mistake = re.search(r"got 'a'|missing required|unknown key|got list", match)
        assert raised.type is (TypeError if type_mistake else ValueError)

    def test_bad_dtype(self):
        with pytest.raises(ValueError, match="dtype must be float32 or float64, got int32"):
            Uniform(0, 1).sample(np.random.default_rng(0), 3, dtype=np.int32)


# ---------------------------------------------------------------------- rotation
class TestRotation:
    def test_matrices_match_scipy(self):
        rng = np.random.default_rng(0)
        axes = random_unit_axes(rng, 20)
        angles = rng.uniform(-math.pi, math.pi, 20)
        expected = ScipyRotation.from_rotvec(axes * angles[:, None]).as_matrix()
        np.testing.assert_allclose(rotation_matrices(axes, angles), expected, atol=1e-12)

    def test_known_quarter_turn_about_z(self):
        aug = Augmentor([Rotation(axis=(0, 0, 5), angle=Constant(math.pi / 2))])
        points = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, 3]]], dtype=np.float64)
        out, _ = run(aug, points)
        expected = np.array([[[0, 1, 0], [-1, 0, 0], [0, 0, 1], [-2, 1, 3]]], dtype=np.float64)
        np.testing.assert_allclose(out, expected, atol=1e-12)

    def test_preserves_norms_and_distances_and_fixes_axis_points(self):
        axis = np.array([1.0, -2.0, 0.5])
        points = cloud(batch=3, points=30)
        points[:, :5] = np.linspace(-2, 2, 5)[None, :, None] * axis / np.linalg.norm(axis)
        out, _ = run(Augmentor([Rotation(axis=axis)]), points)
        np.testing.assert_allclose(out[:, :5], points[:, :5], atol=1e-5)
        np.testing.assert_allclose(
            np.linalg.norm(out, axis=-1), np.linalg.norm(points, axis=-1), rtol=1e-5
        )
        np.testing.assert_allclose(pairwise_distances(out), pairwise_distances(points), atol=1e-5)
        assert not np.allclose(out[:, 5:], points[:, 5:], atol=1e-3)

    def test_axis_is_normalised_and_exposed(self):
        assert Rotation(axis=[0, 3, 4]).axis == pytest.approx((0.0, 0.6, 0.8))
        assert Rotation(axis="RANDOM").axis == "random"

    def test_random_axis_is_unit_and_varies_uniformly(self):
        axes = random_unit_axes(np.random.default_rng(0), 20_000)
        np.testing.assert_allclose(np.linalg.norm(axes, axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(axes.mean(axis=0), 0.0, atol=0.02)
        np.testing.assert_allclose((axes**2).mean(axis=0), 1 / 3, atol=0.02)

    def test_random_axis_rotations_are_rotations_with_different_axes(self):
        matrices = Rotation(axis="random").matrices(np.random.default_rng(1), 50)
        identity = np.broadcast_to(np.eye(3), matrices.shape)
        np.testing.assert_allclose(matrices @ matrices.transpose(0, 2, 1), identity, atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-12)
        axes = ScipyRotation.from_matrix(matrices).as_rotvec()
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        assert np.abs(axes @ axes.T).min() < 0.5  # far from one common axis

    @pytest.mark.parametrize(
        "axis, match",
        [
            ((0, 0, 0), r"Rotation axis must be non-zero, got \[0, 0, 0\]"),
            ((1, 0), r"Rotation axis must be 3 numbers or 'random', got \(1, 0\)"),
            ("sideways", r"Rotation axis must be 3 numbers or 'random', got 'sideways'"),
            ((1, "a", 0), r"Rotation axis component must be a finite real number, got 'a'"),
        ],
    )
    def test_bad_axis(self, axis, match):
        with pytest.raises(Exception, match=match) as raised:
            Rotation(axis=axis)
        assert raised.type is (TypeError if "got 'a'" in match else ValueError)


# ------------------------------------------------------------------------- scale
class TestMapPoints:
    @pytest.mark.parametrize("count", [0, 1, 3, 4, 7, 64, 1001])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_equals_per_point_product(self, count, dtype):
        from pointseq.augment.augmentor import map_points

        rng = np.random.default_rng(count)
        values = rng.normal(size=(5, count, 3)).astype(dtype)
        maps = rng.normal(size=(5, 3, 3))
        got = map_points(values, maps, np.empty_like(values))
        expected = np.einsum("bij,bpj->bpi", maps, values.astype(np.float64))
        tolerance = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)

    def test_strided_input_takes_the_plain_product(self):
        from pointseq.augment.augmentor import map_points

        rng = np.random.default_rng(1)
        values = rng.normal(size=(3, 40, 3))[:, ::2]
        maps = rng.normal(size=(3, 3, 3))
        got = map_points(values, maps, np.empty(values.shape))
        np.testing.assert_allclose(got, np.einsum("bij,bpj->bpi", maps, values), rtol=1e-12, atol=1e-12)


class TestScale:
    def test_isotropic_multiplies_norms_by_one_factor_per_sample(self):
        points = cloud(batch=8, points=40, dtype=np.float64)
        out, _ = run(Augmentor([Scale(Uniform(0.8, 1.25))]), points)
        ratios = np.linalg.norm(out, axis=-1) / np.linalg.norm(points, axis=-1)
        np.testing.assert_allclose(ratios, np.broadcast_to(ratios[:, :1], ratios.shape), rtol=1e-12)
        assert np.all((ratios >= 0.8) & (ratios < 1.25))
        assert np.unique(ratios[:, 0]).size == 8
        np.testing.assert_allclose(out, points * ratios[:, :1, None], rtol=1e-12)

    def test_anisotropic_scales_each_axis_by_its_own_factor(self):
        points = cloud(batch=6, points=40, dtype=np.float64)
        out, _ = run(Augmentor([Scale(Uniform(0.5, 2.0), anisotropic=True)]), points)
        ratios = out / points
        np.testing.assert_allclose(ratios, np.broadcast_to(ratios[:, :1], ratios.shape), rtol=1e-12)
        per_axis = ratios[:, 0, :]
        assert np.all((per_axis >= 0.5) & (per_axis < 2.0))
        assert np.all(np.ptp(per_axis, axis=1) > 1e-6)

    @pytest.mark.parametrize("factor", [Uniform(-0.5, 0.5), Uniform(0.0, 1.0), Constant(0)])
    def test_factor_reaching_zero_is_refused(self, factor):
        with pytest.raises(ValueError, match="Scale factor distribution must not reach 0"):
            Scale(factor)

    def test_anisotropic_must_be_bool(self):
        with pytest.raises(TypeError, match="Scale anisotropic must be True or False, got 'yes'"):
            Scale(anisotropic="yes")


# ------------------------------------------------------------------------ jitter
class TestJitter:
    def test_stays_within_clip(self):
        points = cloud(batch=4, points=5000)
        out, _ = run(Augmentor([Jitter(Normal(0, 0.02), clip=0.01)]), points)
        offsets = out.astype(np.float64) - points
        assert np.abs(offsets).max() <= 0.01 + 1e-6
        at_bound = np.mean(np.abs(offsets) > 0.01 - 1e-5)
        assert at_bound == pytest.approx(2 * stats.norm.sf(0.5), abs=0.01)

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_noise_has_configured_mean_and_std(self, dtype):
        points = np.zeros((4, 50_000, 3), dtype=dtype)  # 600k noise values
        out, _ = run(Augmentor([Jitter(Normal(0.0, 0.02), clip=None)]), points, seed=5)
        assert out.dtype == dtype
        assert out.std() == pytest.approx(0.02, rel=0.03)
        assert abs(out.mean()) < 0.02 * 0.01
        # each axis and sample gets the same spread: no structure across the batch
        np.testing.assert_allclose(out.std(axis=1), 0.02, rtol=0.03)

    def test_a_clip_no_draw_can_reach_changes_nothing(self):
        points = cloud(batch=2, points=3000)
        clipped, _ = run(Augmentor([Jitter(Normal(0, 0.01), clip=0.05)]), points, seed=7)
        unclipped, _ = run(Augmentor([Jitter(Normal(0, 0.01), clip=None)]), points, seed=7)
        np.testing.assert_array_equal(clipped, unclipped)

    def test_uniform_noise(self):
        points = np.zeros((2, 10_000, 3), dtype=np.float32)
        out, _ = run(Augmentor([Jitter(Uniform(-0.1, 0.1), clip=None)]), points)
        assert out.min() >= -0.1 and out.max() <= 0.1
        assert out.std() == pytest.approx(0.2 / math.sqrt(12), rel=0.03)

    @pytest.mark.parametrize(
        "clip, match",
        [
            (0, r"Jitter clip must be a number > 0 or None \(no clipping\), got 0"),
            (-0.1, r"got -0.1"),
            ("big", r"got 'big'"),
        ],
    )
    def test_bad_clip(self, clip, match):
        with pytest.raises(ValueError, match=match):
            Jitter(clip=clip)


# ------------------------------------------------------------------- probability
class TestProbability:
    @pytest.mark.parametrize(
        "transformation",
        [Rotation(p=0.0), Scale(p=0.0), Jitter(p=0.0), Scale(Constant(2), anisotropic=True, p=0)],
    )
    def test_p0_is_identity(self, transformation):
        points = cloud()
        out, _ = run(Augmentor([transformation]), points)
        np.testing.assert_array_equal(out, points)
        assert not np.shares_memory(out, points)

    @pytest.mark.parametrize(
        "transformation",
        [Rotation(axis="random"), Scale(Uniform(1.5, 2.0)), Jitter(Normal(0, 0.1), clip=None)],
    )
    def test_p1_always_applies(self, transformation):
        points = cloud(batch=64, points=4)
        out, _ = run(Augmentor([transformation]), points)
        assert np.all(np.any(out != points, axis=(1, 2)))

    @pytest.mark.parametrize(
        "transformation",
        [
            Rotation(axis="random", p=0.5),
            Scale(Uniform(1.5, 2.0), p=0.5),
            Jitter(Normal(0, 0.1), clip=None, p=0.5),
        ],
    )
    def test_p_half_applies_to_about_half_the_samples(self, transformation):
        points = cloud(batch=2000, points=3)
        out, _ = run(Augmentor([transformation]), points, seed=11)
        changed = np.any(out != points, axis=(1, 2))
        untouched = ~changed
        np.testing.assert_array_equal(out[untouched], points[untouched])
        assert changed.mean() == pytest.approx(0.5, abs=0.05)

    @pytest.mark.parametrize("p", [-0.1, 1.5, "a", None, True])
    def test_bad_p(self, p):
        with pytest.raises(Exception, match=r"Jitter p must be a probability in \[0, 1\], got") as raised:
            Jitter(p=p)
        assert raised.type is (ValueError if isinstance(p, float) else TypeError)


# --------------------------------------------------------------------- augmentor
FULL = Augmentor([
    Rotation(axis="random"),
    Scale(Uniform(0.8, 1.25)),
    Jitter(Normal(0, 0.01), clip=0.05),
])

_CHILD = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from pointseq.augment import Augmentor
aug = Augmentor.from_spec({spec!r})
points = np.random.default_rng(0).normal(size=(4, 300, 3)).astype(np.float32)
coords, vectors = aug([points, points[:, :30]], np.random.default_rng(1234), vectors=[points])
np.savez({path!r}, c0=coords[0], c1=coords[1], v0=vectors[0])
"""


class TestAugmentor:
    def test_same_seed_same_output_in_another_process(self, tmp_path):
        path = str(tmp_path / "child.npz")
        code = _CHILD.format(root=str(ROOT), spec=FULL.to_spec(), path=path)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        points = cloud(batch=4, points=300, seed=0)
        coords, vectors = FULL([points, points[:, :30]], np.random.default_rng(1234), [points])
        child = np.load(path)
        np.testing.assert_array_equal(child["c0"], coords[0])
        np.testing.assert_array_equal(child["c1"], coords[1])
        np.testing.assert_array_equal(child["v0"], vectors[0])

    def test_different_seeds_differ_and_int_seed_is_a_generator_seed(self):
        points = cloud()
        a, _ = run(FULL, points, seed=1)
        b, _ = run(FULL, points, seed=2)
        assert not np.allclose(a, b)
        c, _ = FULL(points, 1)
        np.testing.assert_array_equal(a, c)

    def test_inputs_never_modified(self):
        points, normals = cloud(), cloud(seed=1)
        strided = cloud(points=100)[:, ::2]
        before = [points.copy(), normals.copy(), strided.copy()]
        aug = Augmentor([Jitter(), Rotation(axis="random"), Scale(anisotropic=True), Jitter()])
        coords, vectors = run(aug, [points, strided], vectors=[normals])
        for array, copy in zip([points, normals, strided], before):
            np.testing.assert_array_equal(array, copy)
        for out in [*coords, *vectors]:
            assert not any(np.shares_memory(out, a) for a in (points, normals, strided))

    def test_one_rotation_and_scale_per_sample_shared_by_all_arrays(self):
        aug = Augmentor([Rotation(axis="random"), Scale(anisotropic=True)])
        points = cloud(batch=5, points=40, dtype=np.float64)
        depths = points.reshape(5, 4, 10, 3)  # (B, K, N, 3): middle dimensions are free
        coords, _ = run(aug, [points, points[:, :7], depths])
        np.testing.assert_allclose(coords[1], coords[0][:, :7], atol=1e-12)
        np.testing.assert_allclose(coords[2], coords[0].reshape(5, 4, 10, 3), atol=1e-12)

    def test_jitter_is_drawn_per_array(self):
        aug = Augmentor([Rotation(axis="random"), Jitter(Normal(0, 0.01), clip=0.05)])
        points = cloud(batch=3, points=40)
        coords, _ = run(aug, [points, points])
        diff = coords[1].astype(np.float64) - coords[0]
        assert np.abs(diff).max() <= 0.1 + 1e-5
        assert np.all(np.any(diff != 0, axis=(1, 2)))

    def test_vectors_rotated_with_their_sample_and_never_jittered(self):
        aug = Augmentor([Rotation(axis="random"), Scale(), Jitter(Normal(0, 0.1), clip=None)])
        points = cloud(batch=6, points=30, dtype=np.float64)
        directions = points / np.linalg.norm(points, axis=-1, keepdims=True)
        rotation_only = Augmentor([Rotation(axis="random")])
        _, vectors = run(aug, points, vectors=directions, seed=3)
        rotated, _ = run(rotation_only, directions, seed=3)  # same draws: rotation comes first
        np.testing.assert_allclose(vectors, rotated, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-12)

    @pytest.mark.parametrize(
        "transformations",
        [
            [Rotation(axis="random")],
            [Rotation(axis="random"), Scale()],
            [Scale(Uniform(0.3, 3.0), anisotropic=True), Rotation(axis="random")],
            [Rotation(axis="random"), Scale(Uniform(0.3, 3.0), anisotropic=True), Rotation()],
        ],
    )
    def test_normals_stay_unit_and_perpendicular_to_the_transformed_plane(self, transformations):
        rng = np.random.default_rng(0)
        normal = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
        in_plane = np.cross(normal, [0.0, 0.0, 1.0])
        other = np.cross(normal, in_plane)
        weights = rng.normal(size=(8, 20, 2))
        points = weights[..., :1] * in_plane + weights[..., 1:] * other + 0.3 * normal
        normals = np.broadcast_to(normal, (8, 1, 3))
        coords, vectors = run(Augmentor(transformations), points, vectors=normals)
        edges = coords[:, 1:] - coords[:, :1]
        np.testing.assert_allclose(np.einsum("bnk,bk->bn", edges, vectors[:, 0]), 0, atol=1e-10)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-12)

    def test_vector_lengths_kept_and_mirror_flips_normals_outward(self):
        sphere = cloud(batch=2, points=20, dtype=np.float64)
        sphere /= np.linalg.norm(sphere, axis=-1, keepdims=True)
        long_normals = 3.0 * sphere
        aug = Augmentor([Scale(Constant(-2.0))])
        coords, vectors = run(aug, sphere, vectors=long_normals)
        np.testing.assert_allclose(vectors, -long_normals)  # outward on the mirrored sphere
        np.testing.assert_allclose(coords, -2.0 * sphere)
        _, vectors = run(Augmentor([Scale(Uniform(0.3, 3), anisotropic=True)]), sphere,
                         vectors=long_normals)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 3.0)
        assert np.all(np.sum(vectors * sphere, axis=-1) > 0)

    def test_transformations_apply_in_order(self):
        zeros = np.zeros((2, 5, 3), dtype=np.float32)
        jitter = Jitter(Constant(0.1), clip=None)
        double = Scale(Constant(2.0))
        jitter_first, _ = run(Augmentor([jitter, double]), zeros)
        scale_first, _ = run(Augmentor([double, jitter]), zeros)
        np.testing.assert_allclose(jitter_first, 0.2, rtol=1e-6)
        np.testing.assert_allclose(scale_first, 0.1, rtol=1e-6)
        quarter = Rotation(axis=(0, 0, 1), angle=Constant(math.pi / 2))
        ones = np.ones((1, 1, 3))
        out, _ = run(Augmentor([quarter, Jitter(Constant(1.0), clip=None), quarter]), ones)
        # (1, 1, 1) -> (-1, 1, 1) -> (0, 2, 2) -> (-2, 0, 2)
        np.testing.assert_allclose(out, [[[-2.0, 0.0, 2.0]]], atol=1e-12)

    @pytest.mark.parametrize(
        "dtype, expected",
        [
            (np.float32, np.float32),
            (np.float64, np.float64),
            (np.float16, np.float16),
            (np.int32, np.float64),
        ],
    )
    def test_dtype_preserved(self, dtype, expected):
        points = (cloud() * 10).astype(dtype)
        coords, vectors = run(FULL, [points], vectors=(points,))
        assert coords[0].dtype == expected and vectors[0].dtype == expected

    def test_output_structure_follows_input(self):
        points = cloud()
        coords, vectors = run(FULL, points)
        assert isinstance(coords, np.ndarray) and coords.shape == points.shape
        assert vectors == ()
        coords, vectors = run(FULL, (points, points), vectors=points)
        assert isinstance(coords, tuple) and len(coords) == 2
        assert isinstance(vectors, np.ndarray)
        coords, vectors = run(FULL, [points], vectors=[points])
        assert isinstance(coords, list) and isinstance(vectors, list)

    def test_empty_batch_and_empty_pipeline(self):
        empty = np.zeros((0, 7, 3), dtype=np.float32)
        coords, _ = run(FULL, empty)
        assert coords.shape == (0, 7, 3) and coords.dtype == np.float32
        points = cloud()
        coords, _ = run(Augmentor([]), points)
        np.testing.assert_array_equal(coords, points)
        single_points = cloud(points=1)[:, 0]  # (B, 3): one point per sample
        coords, _ = run(FULL, single_points)
        assert coords.shape == single_points.shape

    @pytest.mark.parametrize(
        "coords, vectors, match",
        [
            (np.zeros((2, 5, 4)), (),
             r"coords must have shape \(B, \.\.\., 3\), got shape \(2, 5, 4\)"),
            ([np.zeros((2, 5, 3)), np.zeros((2, 3, 2))], (),
             r"coords\[1\] must have shape \(B, \.\.\., 3\), got shape \(2, 3, 2\)"),
            (np.zeros(3), (), r"coords must have shape \(B, \.\.\., 3\), got shape \(3,\)"),
            ([np.zeros((2, 5, 3)), np.zeros((3, 5, 3))], (),
             r"coords\[0\] has 2 samples but coords\[1\] has 3"),
            (np.zeros((2, 5, 3)), [np.zeros((4, 1, 3))],
             r"coords\[0\] has 2 samples but vectors\[0\] has 4"),
            (np.zeros((2, 5, 3)), [np.zeros((2, 1, 2))],
             r"vectors\[0\] must have shape \(B, \.\.\., 3\), got shape \(2, 1, 2\)"),
            (np.array([[["a", "b", "c"]]]), (), r"coords must hold real numbers, got dtype <U1"),
            ([], (), r"coords must hold at least one array"),
        ],
    )
    def test_bad_arrays(self, coords, vectors, match):
        with pytest.raises(ValueError, match=match):
            FULL(coords, np.random.default_rng(0), vectors=vectors)

    def test_bad_rng(self):
        match = "rng must be a numpy.random.Generator or an int seed, got None"
        with pytest.raises(TypeError, match=match):
            FULL(cloud(), None)


# ------------------------------------------------------------------------- specs
ORIGINAL_SPEC = {
    "transformations": [
        {
            "type": "Rotation",
            "axis": [0, 0, 1],
            "angle_distribution": {"type": "uniform", "start": -3.141592, "end": 3.141592},
        },
        {"type": "Scale", "scale_distribution": {"type": "uniform", "start": 0.99, "end": 1.01}},
        {"type": "Jitter", "noise_distribution": {"type": "gaussian", "mean": 0, "stdev": 0.001}},
    ]
}


class TestSpecs:
    def test_original_spec_format(self):
        aug = Augmentor.from_spec(ORIGINAL_SPEC)
        assert aug == Augmentor([
            Rotation(axis=(0, 0, 1), angle=Uniform(-3.141592, 3.141592)),
            Scale(Uniform(0.99, 1.01)),
            Jitter(Normal(0, 0.001)),
        ])

    def test_new_keys_and_case_insensitive_types(self):
        aug = Augmentor.from_spec({"transformations": [
            {"type": "rotation", "axis": "random", "angle": 0.5, "p": 0.25},
            {"type": "SCALE", "factor": {"type": "constant", "value": 2}, "anisotropic": True},
            {"type": "jitter", "noise": {"type": "normal", "mean": 0, "stdev": 0.1}, "clip": None},
        ]})
        rotation, scale, jitter = aug.transformations
        assert rotation.axis == "random" and rotation.angle == Constant(0.5) and rotation.p == 0.25
        assert scale.factor == Constant(2) and scale.anisotropic
        assert jitter.clip is None and jitter.noise == Normal(0, 0.1)

    def test_to_spec_round_trips_through_json(self):
        aug = Augmentor([
            Rotation(axis=(1, 1, 0), angle=Normal(0, 0.1), p=0.3),
            Scale(Uniform(0.5, 2), anisotropic=True, p=0.7),
            Jitter(Uniform(-0.01, 0.01), clip=None),
            Rotation(axis="random"),
        ])
        spec = json.loads(json.dumps(aug.get_config()))
        assert spec == aug.to_spec()
        rebuilt = Augmentor.from_spec(spec)
        assert rebuilt == aug and rebuilt.to_spec() == aug.to_spec()
        points = cloud()
        np.testing.assert_array_equal(run(rebuilt, points)[0], run(aug, points)[0])

    def test_other_accepted_forms(self):
        assert Augmentor.from_spec(FULL) is FULL
        original = Augmentor.from_spec(ORIGINAL_SPEC)
        assert Augmentor.from_spec(ORIGINAL_SPEC["transformations"]) == original
        assert Augmentor(ORIGINAL_SPEC["transformations"]) == original
        assert Augmentor.from_spec({"type": "SimpleDataAugmentor", **ORIGINAL_SPEC}) == original
        assert transformation_from_spec({"type": "Scale"}) == Scale()

    @pytest.mark.parametrize(
        "spec, match",
        [
            ({"transformations": [{"type": "Rotation", "angel": 1}]},
             r"unknown key\(s\) \['angel'\] in Rotation spec .*valid keys: "
             r"\['type', 'axis', 'angle', 'angle_distribution', 'p'\]"),
            ({"transformations": [{"type": "Scale", "clip": 1}]},
             r"unknown key\(s\) \['clip'\] in Scale spec "
             r".*'scale_distribution', 'anisotropic', 'p'"),
            ({"transformations": [{"type": "Jitter", "noise": 0.1, "noise_distribution": 0.2}]},
             r"Jitter spec sets \['noise', 'noise_distribution'\], which are aliases"),
            ({"transformations": [{"type": "Shear"}]},
             r"unknown type 'Shear'; known types: \['Rotation', 'Scale', 'Jitter'\]"),
            ({"transformations": ["Rotation"]},
             r"a transformation must be a Transformation or a spec dict"),
            ({"transforms": []}, r"unknown key\(s\) \['transforms'\] in Augmentor spec"),
            ({}, r"Augmentor spec \{\} is missing required key\(s\) \['transformations'\]"),
            ({"type": "Sequencer", "transformations": []}, r"Augmentor spec type must be one of"),
            ({"transformations": [{"type": "Rotation", "p": 2}]},
             r"Rotation p must be a probability"),
        ],
    )
    def test_bad_specs(self, spec, match):
        with pytest.raises(Exception, match=match) as raised:
            Augmentor.from_spec(spec)
        type_mistake = re.search(r"unknown key|aliases|missing required|a transformation must be", match)
        assert raised.type is (TypeError if type_mistake else ValueError)

    def test_pickle_round_trip_and_repr(self):
        rebuilt = pickle.loads(pickle.dumps(FULL))
        assert rebuilt == FULL
        points = cloud()
        np.testing.assert_array_equal(run(rebuilt, points)[0], run(FULL, points)[0])
        assert repr(Scale()) == (
            "Scale(factor=Uniform(start=0.8, end=1.25), anisotropic=False, p=1.0)"
        )

    def test_single_transformation_is_not_a_list(self):
        with pytest.raises(TypeError, match="transformations must be a list"):
            Augmentor(Rotation())
