import torch

from studio.diffusion.adapter import Denoiser, classifier_free_guidance, to_x0


class Affine(torch.nn.Module):
    """A fake UNet: out = x * t + sum(cond), so every formula can be checked by hand."""

    def forward(self, x, t, encoder_hidden_states=None):
        out = x * t.view(-1, 1, 1, 1).float() + encoder_hidden_states.sum(dim=(1, 2)).view(-1, 1, 1, 1)

        class R:
            sample = out

        return R()


def test_cfg_formula():
    u, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0])
    assert torch.allclose(classifier_free_guidance(u, c, 1.0), c)
    assert torch.allclose(classifier_free_guidance(u, c, 0.0), u)
    assert torch.allclose(classifier_free_guidance(u, c, 3.0), torch.tensor([7.0, -1.0]))


def test_guided_equals_two_separate_calls():
    d = Denoiser(Affine())
    x = torch.randn(3, 1, 2, 2)
    cond, uncond = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    g = d.guided(x, 2, cond, uncond, 4.0)
    ref = d(x, 2, uncond) + 4.0 * (d(x, 2, cond) - d(x, 2, uncond))
    assert torch.allclose(g, ref)
    assert torch.allclose(d.guided(x, 2, cond, uncond, 1.0), d(x, 2, cond))


def test_to_x0_inverts_each_parameterisation():
    x0, eps = torch.randn(4), torch.randn(4)
    alpha, sigma = torch.tensor(0.6), torch.tensor(0.8)  # alpha^2 + sigma^2 = 1
    x_t = alpha * x0 + sigma * eps
    assert torch.allclose(to_x0(eps, x_t, "epsilon", alpha, sigma), x0, atol=1e-6)
    v = alpha * eps - sigma * x0
    assert torch.allclose(to_x0(v, x_t, "v_prediction", alpha, sigma), x0, atol=1e-6)
    noise, data, t = torch.randn(4), torch.randn(4), 0.3
    x_t = t * data + (1 - t) * noise
    assert torch.allclose(to_x0(noise - data, x_t, "flow_prediction", t=t), data, atol=1e-6)


def test_every_vp_prediction_gives_back_the_noise_and_the_flow_velocity():
    from studio.diffusion.adapter import flow_velocity, to_epsilon, vp_flow_velocity

    x0, eps = torch.randn(4), torch.randn(4)
    alpha, sigma = torch.tensor(0.8), torch.tensor(0.6)
    x_t = alpha * x0 + sigma * eps
    preds = {"epsilon": eps, "v_prediction": alpha * eps - sigma * x0, "sample": x0}
    for kind, pred in preds.items():
        assert torch.allclose(to_epsilon(pred, x_t, kind, alpha, sigma), eps, atol=1e-6), kind
        assert torch.allclose(to_x0(pred, x_t, kind, alpha, sigma), x0, atol=1e-6), kind
        # y = x / (alpha + sigma) moves along t x1 + (1 - t) x0 with velocity x1 - x0 (data minus noise)
        assert torch.allclose(vp_flow_velocity(pred, x_t, kind, alpha, sigma), x0 - eps, atol=1e-6), kind
    assert torch.equal(flow_velocity(eps - x0), x0 - eps)  # diffusers stores noise - data
