"""The PyTorch peer of benchmarks/throughput.py is the package's network.

Skipped without torch (an optional benchmark dependency).
"""

import os
import sys

import pytest

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "benchmarks"))

import torch_networks  # noqa: E402
import torch_peer  # noqa: E402


@pytest.mark.parametrize(
    "preset, trainable, total",
    [
        ("fashion_mnist", 404_433, 405_139),
        ("cifar10", 5_190_467, 5_193_285),
        ("celeba", 19_321_667, 19_327_557),
        # Dai & Wipf's Infogan: + spectral norm's vector_u and BN statistics.
        ("fashion_mnist_infogan", 13_331_585, 13_349_955),
    ],
)
def test_parameter_counts_equal_the_packages(preset, trainable, total):
    counts = torch_peer.check_parameter_counts(preset)
    assert counts == {"trainable": trainable, "total": total}


def test_a_different_network_is_refused(monkeypatch):
    build = torch_peer.build_torch_vae

    def with_an_extra_layer(preset):
        model = build(preset)
        model.extra = torch.nn.Linear(2, 2)
        return model

    monkeypatch.setattr(torch_peer, "build_torch_vae", with_an_extra_layer)
    with pytest.raises(ValueError, match="not the package's network"):
        torch_peer.check_parameter_counts("tiny")


@pytest.mark.parametrize("preset", ["fashion_mnist", "fashion_mnist_infogan"])
def test_forward_pass_with_copied_weights_equals_the_packages(preset):
    # Inference (randomised BN statistics) and training mode (with the
    # Infogan's spectral-norm power iteration); check_forward raises above
    # the tolerance. Measured: <= 4e-6.
    differences = torch_peer.check_forward(preset, tolerance=2e-5)
    for mode in ("inference", "training"):
        assert set(differences[mode]) == {"z_mean", "z_log_sigma", "reconstruction"}


@pytest.mark.parametrize("preset", ["fashion_mnist", "fashion_mnist_infogan"])
def test_loss_and_gradients_equal_the_packages(preset):
    # The same weights, images and noise. Measured: the same loss to float32
    # rounding; gradients within 4e-5 of gradients up to 8.6 (fashion_mnist),
    # 7e-5 of 5.5 (infogan: spectral norm's kernel replaced, as in Keras).
    result = torch_peer.check_loss(preset)
    keras_loss, torch_loss = result["loss"]
    assert torch_loss == pytest.approx(keras_loss, rel=1e-5)
    assert result["gradient_max_abs_difference"] < 3e-5 * result["gradient_max_abs"]


def test_tensorflow_same_padding_is_what_makes_the_networks_equal(monkeypatch):
    # PyTorch's symmetric padding of the strided convolutions shifts the
    # pixels by one: the check must see it.
    def symmetric(self, x):
        return torch.nn.functional.conv2d(x, self.weight, self.bias, 2, 1)

    monkeypatch.setattr(torch_networks.StridedSameConv, "forward", symmetric)
    with pytest.raises(ValueError, match="forward pass differs"):
        torch_peer.check_forward("fashion_mnist")


def test_one_training_step_moves_running_mse():
    import vae_balance

    config = vae_balance.get_preset("fashion_mnist").to_dict()
    torch.manual_seed(0)
    model = torch_peer.build_torch_vae(config)
    optimizer = torch_peer.make_optimizer(model)
    step = torch_peer.make_train_step(model, optimizer)
    x = torch_peer.synthetic_batch(model, 4)
    before = [p.detach().clone() for p in model.parameters()]
    loss, batch_mse = step(x)
    assert torch.isfinite(loss)
    # min(1, 0.99 * 1 + 0.01 * mse) with mse < 1 for images in [0, 1]
    expected = 0.99 + 0.01 * float(batch_mse)
    assert float(model.running_mse) == pytest.approx(expected, rel=1e-6)
    assert float(model.running_mse) < 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # the BatchNorm running statistics moved too (PyTorch momentum 1 - 0.999)
    bn = model.encoder.scale0.bn1
    assert 0.0 < float(bn.running_mean.abs().max()) < 0.01


def test_a_bfloat16_autocast_step_computes_the_float32_loss_to_its_rounding():
    import vae_balance

    config = vae_balance.get_preset("fashion_mnist").to_dict()
    losses = []
    for bfloat16 in (False, True):
        torch.manual_seed(0)
        model = torch_peer.build_torch_vae(config)
        step = torch_peer.make_train_step(
            model, torch_peer.make_optimizer(model), bfloat16=bfloat16
        )
        loss, _ = step(torch_peer.synthetic_batch(model, 4))
        assert loss.dtype == torch.float32
        losses.append(float(loss))
    # bfloat16 convolutions: 8 significant bits; the loss (~1,000) agrees to
    # a percent, and differs (the autocast did something).
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)
    assert losses[1] != losses[0]


def test_the_peer_refuses_other_balancing_strategies():
    import vae_balance

    with pytest.raises(ValueError, match="balance='running'"):
        torch_peer.build_torch_vae(vae_balance.get_preset("tiny", balance="learned"))


def test_spectral_norm_normalises_the_kernel_in_training_mode_only():
    torch.manual_seed(0)
    layer = torch_networks.KerasSpectralNorm(torch.nn.Linear(6, 4))
    kernel = layer.layer.weight.detach().clone()
    u = layer.u.clone()
    layer.eval()(torch.ones(2, 6))
    assert torch.equal(layer.layer.weight, kernel) and torch.equal(layer.u, u)
    layer.train()(torch.ones(2, 6))
    # One power iteration from u, by hand: v = W^T u / |.|, u' = W v / |.|,
    # sigma = u'.W v; the kernel is replaced by W / sigma.
    v = kernel.T @ u / torch.linalg.norm(kernel.T @ u)
    u_new = kernel @ v / torch.linalg.norm(kernel @ v)
    sigma = u_new @ kernel @ v
    torch.testing.assert_close(layer.u, u_new)
    torch.testing.assert_close(layer.layer.weight, kernel / sigma)


def test_time_training_reports_the_speed_of_finite_steps():
    import vae_balance

    config = vae_balance.get_preset("tiny").to_dict()
    result = torch_peer.time_training(config, warmup=1, steps=2, batch_size=4)
    assert result["timed_steps"] == 2 and result["warmup_steps"] == 1
    assert result["images_per_second"] > 0
    assert result["parameters"] == torch_peer.check_parameter_counts("tiny")["total"]
    assert 0.0 < result["running_mse"] < 1.0  # three steps of the min rule
