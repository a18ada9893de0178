"""A discrete (DDPM) noise schedule in sigma space, and the schedulers that pick
the sigmas a sampler walks, written from their published definitions:
k-diffusion's DiscreteSchedule (t_to_sigma, sigma_to_t, get_sigmas),
get_sigmas_karras and get_sigmas_exponential, ComfyUI's sgm_uniform and
simple schedulers, and DiT's respacing of its 1000 timesteps. Everything is in
float64 (numpy). Shared by the reference tests and the benchmarks."""
import math

import numpy as np

KARRAS_RHO = 7.0
SCHEDULERS = ("default", "normal", "karras", "exponential", "sgm_uniform", "simple")


def alphas_cumprod(timesteps=1000, beta_start=1e-4, beta_end=0.02, scaled=False):
    """The running product of 1 - beta_t over linear betas (DiT's schedule), or
    betas linear in their square root (`scaled`: Stable Diffusion's
    "scaled_linear", 0.00085..0.012)."""
    out, product = [], 1.0
    for t in range(timesteps):
        if scaled:
            root = math.sqrt(beta_start) + (math.sqrt(beta_end) - math.sqrt(beta_start)) * t / (timesteps - 1)
            beta = root * root
        else:
            beta = beta_start + (beta_end - beta_start) * t / (timesteps - 1)
        product *= 1.0 - beta
        out.append(product)
    return out


def leading_timesteps(steps, total=1000, offset=1):
    """diffusers' "leading" spacing: 0, r, 2r, ... with r = total // steps, plus
    steps_offset, ascending (Stable Diffusion's DDIM config)."""
    return [min(total - 1, i * (total // steps) + offset) for i in range(steps)]


def spaced_timesteps(steps, total=1000):
    """DiT's respace.space_timesteps(total, str(steps)): `steps` timesteps over
    0..total-1 with both ends kept, ascending, from a stride accumulated in
    floating point and Python's round (halves to even)."""
    stride = (total - 1) / (steps - 1) if steps > 1 else 1
    out, position = [], 0.0
    for _ in range(steps):
        out.append(round(position))
        position += stride
    return out


class DiscreteSchedule:
    """sigma_t = sqrt((1 - ab_t) / ab_t) for t = 0..T-1 (ascending), and the
    maps between fractional timesteps and sigmas, interpolated in log sigma."""

    def __init__(self, timesteps=1000, beta_start=1e-4, beta_end=0.02, scaled=False, leading=False):
        """`leading`: ddim and ddpm walk diffusers' leading timesteps (offset 1)
        and ddim ends at timestep 0, not at sigma 0 (set_alpha_to_one false),
        as Stable Diffusion's scheduler config says; else DiT's respacing."""
        self.leading = leading
        ab = np.array(alphas_cumprod(timesteps, beta_start, beta_end, scaled), dtype=np.float64)
        self.sigmas = np.sqrt((1.0 - ab) / ab)
        self.log_sigmas = np.log(self.sigmas)
        self.sigma_min, self.sigma_max = float(self.sigmas[0]), float(self.sigmas[-1])

    def t_to_sigma(self, t):
        t = min(max(float(t), 0.0), len(self.sigmas) - 1.0)
        low, high = math.floor(t), math.ceil(t)
        w = t - low
        return math.exp((1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high])

    def sigma_to_t(self, sigma):
        """The last timestep whose log sigma is at or below log(sigma) (kept one
        short of the end), and the fraction of the way to the next one, in [0, 1]."""
        log_sigma = math.log(sigma)
        at_or_below = np.nonzero(self.log_sigmas <= log_sigma)[0]
        low = int(at_or_below[-1]) if len(at_or_below) else 0
        low = min(low, len(self.sigmas) - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = min(max((lo - log_sigma) / (lo - hi), 0.0), 1.0)
        return (1.0 - w) * low + w * (low + 1)


def linspace(first, last, n):
    return [first if n == 1 else first + (last - first) * i / (n - 1) for i in range(n)]


def sigmas(schedule, scheduler, sampler, steps):
    """The descending sigmas of `steps` steps and the final 0."""
    T = len(schedule.sigmas)
    if scheduler == "default" and sampler in ("ddim", "ddpm"):
        spaced = leading_timesteps(steps, T) if schedule.leading else spaced_timesteps(steps, T)
        out = [float(schedule.sigmas[t]) for t in reversed(spaced)]
        if schedule.leading and sampler == "ddim":
            return out + [schedule.sigma_min]
    elif scheduler in ("default", "normal"):
        out = [schedule.t_to_sigma(t) for t in linspace(T - 1, 0, steps)]
    elif scheduler == "karras":
        rho = KARRAS_RHO
        top, bottom = schedule.sigma_max ** (1 / rho), schedule.sigma_min ** (1 / rho)
        out = [(top + ramp * (bottom - top)) ** rho for ramp in linspace(0.0, 1.0, steps)]
    elif scheduler == "exponential":
        out = [math.exp(v) for v in linspace(math.log(schedule.sigma_max), math.log(schedule.sigma_min), steps)]
    elif scheduler == "sgm_uniform":
        out = [schedule.t_to_sigma(t) for t in linspace(T - 1, 0, steps + 1)[:steps]]
    elif scheduler == "simple":
        out = [float(schedule.sigmas[T - 1 - int(i * (T / steps))]) for i in range(steps)]  # ComfyUI: x * (T / steps)
    else:
        raise ValueError(f"unknown scheduler {scheduler}")
    return out + [0.0]
