"""Samplers in sigma space for the reference tests, written from their published
definitions: k-diffusion's sampling.py (euler, euler_ancestral, heun, dpm_2,
dpmpp_2s_ancestral, dpmpp_2m, dpmpp_2m_sde), ComfyUI's lcm, DDIM (Song et al.,
eta 0) and the learned-range DDPM posterior of improved DDPM (Nichol &
Dhariwal) that DiT samples with, and a classifier-free-guidance denoiser in
the manner of k-diffusion's external.py (DiscreteEpsDDPMDenoiser) with DiT's
guidance of the first three channels only.

Latents are float32 numpy arrays; every update is computed in float64 and
stored as float32, as tiledraw documents it. Samplers use eta = 1, s_noise = 1
and s_churn = 0; stochastic steps draw their noise from `noise.draw()`."""
import math

import numpy as np
import torch

# Coefficients kept apart so that a test can perturb one and see the comparison fail.
DPMPP_2M_HALF = 0.5  # dpm++2m's 1/(2r) is DPMPP_2M_HALF / r
ANCESTRAL_ETA = 1.0

SAMPLERS = ("euler", "euler_a", "heun", "dpm2", "dpm++2m", "dpm++2s_a", "dpm++2m_sde", "lcm", "ddim", "ddpm")


def f64(a):
    return np.asarray(a, dtype=np.float64)


def f32(a):
    return np.asarray(a, dtype=np.float64).astype(np.float32)


class GuidedDenoiser:
    """D(x, sigma) for an epsilon-predicting discrete model (x = x0 + sigma eps):
    the model reads x / sqrt(1 + sigma^2) at the fractional timestep of sigma;
    with cfg != 1, one batched call of the conditional rows then the
    unconditional (null-class) rows, and eps = uncond + cfg (cond - uncond) on
    the first min(3, channels) channels (DiT's forward_with_cfg), the rest and
    the learned variance from the conditional rows."""

    def __init__(self, model, schedule, labels, null_class, cfg, channels, learn_sigma, clip):
        self.model, self.schedule, self.cfg = model, schedule, cfg
        self.labels, self.null_class = list(labels), null_class
        self.channels, self.learn_sigma, self.clip = channels, learn_sigma, clip

    def __call__(self, x, sigma):
        images, c = x.shape[0], self.channels
        x_in = f32(f64(x) * (1.0 / math.sqrt(1.0 + sigma * sigma)))
        guided = self.cfg != 1.0
        labels = self.labels + ([self.null_class] * images if guided else [])
        batch = np.concatenate([x_in, x_in]) if guided else x_in
        t = np.float32(self.schedule.sigma_to_t(sigma))
        with torch.no_grad():
            out = self.model(torch.from_numpy(batch), torch.full((len(labels),), float(t), dtype=torch.float32),
                             torch.tensor(labels)).numpy()
        eps = out[:images, :c].copy()
        if guided:
            g = min(3, c)
            uncond = f64(out[images:, :g])
            eps[:, :g] = f32(uncond + self.cfg * (f64(out[:images, :g]) - uncond))
        variance = out[:images, c:2 * c].copy() if self.learn_sigma else np.full_like(eps, -1.0)
        denoised = f64(x) - sigma * f64(eps)
        if self.clip:
            denoised = np.clip(denoised, -1.0, 1.0)
        return f32(denoised), variance


def to_d(x, sigma, denoised):
    """The ODE's derivative dx/dsigma = (x - D(x, sigma)) / sigma."""
    return (f64(x) - f64(denoised)) / sigma


def ancestral_step(sigma, sigma_next, eta=None):
    """k-diffusion's get_ancestral_step: (sigma_down, sigma_up)."""
    eta = ANCESTRAL_ETA if eta is None else eta
    if eta == 0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - up ** 2), up


def sample(name, denoise, sigmas, x, noise):
    """Walks `sigmas` from latents x at sigmas[0]; returns the latents at sigmas[-1]."""
    x = f32(x)
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised, variance = denoise(x, s)
        if name == "euler":
            x = f32(f64(x) + to_d(x, s, denoised) * (s_next - s))
        elif name == "ddim":
            # eta 0: sqrt(ab_next) x0 + sqrt(1 - ab_next) eps in variance-preserving form,
            # i.e. x0 + sigma_next eps with eps = (x - x0) / sigma.
            eps = (f64(x) - f64(denoised)) / s
            x = f32(f64(denoised) + s_next * eps)
        elif name == "euler_a":
            down, up = ancestral_step(s, s_next)
            x = f32(f64(x) + to_d(x, s, denoised) * (down - s))
            if s_next > 0:
                x = f32(f64(x) + f64(noise.draw()) * up)
        elif name == "heun":
            d, dt = to_d(x, s, denoised), s_next - s
            if s_next == 0:
                x = f32(f64(x) + d * dt)
            else:
                x2 = f32(f64(x) + d * dt)
                d2 = to_d(x2, s_next, denoise(x2, s_next)[0])
                x = f32(f64(x) + (d + d2) / 2 * dt)
        elif name == "dpm2":
            d = to_d(x, s, denoised)
            if s_next == 0:
                x = f32(f64(x) + d * (s_next - s))
            else:
                s_mid = math.exp(math.log(s) + 0.5 * (math.log(s_next) - math.log(s)))
                x2 = f32(f64(x) + d * (s_mid - s))
                d2 = to_d(x2, s_mid, denoise(x2, s_mid)[0])
                x = f32(f64(x) + d2 * (s_next - s))
        elif name == "dpm++2s_a":
            down, up = ancestral_step(s, s_next)
            if down == 0:
                x = f32(f64(x) + to_d(x, s, denoised) * (down - s))
            else:
                # DPM-Solver++(2S) in t = -log sigma, its intermediate point at r = 1/2.
                t, t_next = -math.log(s), -math.log(down)
                h = t_next - t
                s_mid = math.exp(-(t + 0.5 * h))
                x2 = f32((s_mid / s) * f64(x) - math.expm1(-0.5 * h) * f64(denoised))
                denoised2 = denoise(x2, s_mid)[0]
                x = f32((down / s) * f64(x) - math.expm1(-h) * f64(denoised2))
            if s_next > 0:
                x = f32(f64(x) + f64(noise.draw()) * up)
        elif name == "dpm++2m":
            if s_next == 0:
                x = f32(denoised)  # t_next = inf: the update is the clean estimate
            else:
                t, t_next = -math.log(s), -math.log(s_next)
                h = t_next - t
                if old_denoised is None:
                    d = f64(denoised)
                else:
                    r = (t - (-math.log(sigmas[i - 1]))) / h
                    d = (1 + DPMPP_2M_HALF / r) * f64(denoised) - (DPMPP_2M_HALF / r) * f64(old_denoised)
                x = f32((s_next / s) * f64(x) - math.expm1(-h) * d)
            old_denoised = denoised
        elif name == "dpm++2m_sde":
            if s_next == 0:
                x = f32(denoised)
            else:
                # eta 1, midpoint correction.
                t, t_s = -math.log(s), -math.log(s_next)
                h = t_s - t
                eta_h = 1.0 * h
                v = (s_next / s) * math.exp(-eta_h) * f64(x) + (-math.expm1(-h - eta_h)) * f64(denoised)
                if old_denoised is not None:
                    r = h_last / h
                    v = v + 0.5 * (-math.expm1(-h - eta_h)) * (1 / r) * (f64(denoised) - f64(old_denoised))
                v = v + f64(noise.draw()) * s_next * math.sqrt(-math.expm1(-2 * eta_h))
                x = f32(v)
                h_last = h
            old_denoised = denoised
        elif name == "lcm":
            x = denoised
            if s_next > 0:
                x = f32(f64(x) + s_next * f64(noise.draw()))
        elif name == "ddpm":
            x = ddpm_step(x, s, s_next, denoised, variance, noise)
        else:
            raise ValueError(f"unknown sampler {name}")
    return x


def ddpm_step(x, s, s_next, denoised, variance, noise):
    """One step of the reverse chain through the levels s -> s_next in
    variance-preserving form (ab = 1 / (1 + sigma^2), x_vp = x sqrt(ab)): the
    posterior q(x_next | x, x0) with the chain's beta = 1 - ab / ab_next, and
    the learned log variance v interpolated (v + 1) / 2 of the way from the
    posterior's to beta's. No noise when s_next is 0."""
    ab, ab_next = 1.0 / (1.0 + s * s), 1.0 / (1.0 + s_next * s_next)
    beta = 1.0 - ab / ab_next
    x_vp = f64(x) * math.sqrt(ab)
    mean = (math.sqrt(ab_next) * beta / (1.0 - ab)) * f64(denoised) + \
           (math.sqrt(1.0 - beta) * (1.0 - ab_next) / (1.0 - ab)) * x_vp
    if s_next > 0:
        posterior_log_var = math.log(beta * (1.0 - ab_next) / (1.0 - ab))
        frac = (f64(variance) + 1.0) / 2.0
        log_var = frac * math.log(beta) + (1.0 - frac) * posterior_log_var
        mean = mean + np.exp(0.5 * log_var) * f64(noise.draw())
    return f32(mean * math.sqrt(1.0 + s_next * s_next))

