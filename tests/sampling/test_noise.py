"""One GEN-2 noise convention (sampling.noise.second_stage_noise): the
sampler, the evaluation's GEN-2 sampler and the export's generate(n, seed)
draw the same u, hence the same images."""

import numpy as np
import tensorflow as tf

from vae_balance.sampling import latent as samplers
from vae_balance.sampling.noise import noise_seed, second_stage_noise
from vae_balance.sampling.run import load_run


def test_second_stage_noise_is_stateless_philox_with_seed_pair_seed_0():
    u = second_stage_noise(16, 4, seed=0)
    assert u.shape == (16, 4) and u.dtype == tf.float32
    expected = tf.random.stateless_normal([16, 4], seed=[0, 0], alg="philox")
    np.testing.assert_array_equal(u, expected)
    np.testing.assert_array_equal(second_stage_noise(16, 4, 0), u)  # no state
    np.testing.assert_array_equal(
        second_stage_noise(tf.constant(16, tf.int64), 4, tf.constant(0, tf.int64)), u
    )
    assert not np.allclose(second_stage_noise(16, 4, 1), u)
    assert second_stage_noise(0, 4, 0).shape == (0, 4)


def test_a_generator_seed_gives_one_draw_of_its_stream_and_none_a_fresh_one():
    rng = np.random.default_rng(5)
    first, second = noise_seed(rng), noise_seed(rng)
    assert first != second
    assert first == noise_seed(np.random.default_rng(5))
    assert noise_seed(7) == 7
    assert not np.array_equal(
        second_stage_noise(4, 4, None), second_stage_noise(4, 4, None)
    )


def test_sampler_evaluation_and_export_draw_the_same_gen2_images(tiny_run):
    run = load_run(tiny_run["workdir"])

    def crop(images):  # the export's images are at the native size
        pad = run.pad
        return images[:, pad : images.shape[1] - pad, pad : images.shape[2] - pad]

    exported = tf.saved_model.load(run.workdir.sampler_dir)
    generated = exported.signatures["generate"](
        num_samples=tf.constant(16, tf.int64), seed=tf.constant(0, tf.int64)
    )["images"].numpy()
    sampled = crop(run.sampler.sample(16, seed=0))
    assert generated.shape == sampled.shape == (16, 8, 8, 1)
    # Same u; the decoders run once in predict and once in the SavedModel.
    np.testing.assert_allclose(sampled, generated, atol=1e-6)
    np.testing.assert_array_equal(exported.generate(16, 0)["images"], generated)
    assert not np.allclose(crop(run.sampler.sample(16, seed=1)), generated)
    # The evaluation's GEN-2 sampler: the same images for the same int seed.
    gen2 = samplers.build_samplers(*run.stages)["gen2"].generate(16, 0)
    np.testing.assert_allclose(crop(gen2), sampled, atol=1e-6)
