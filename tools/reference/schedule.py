"""DDPM's discrete schedule as tiledraw samples it (src/sampling/sampler.cpp):
1000 linear betas from 1e-4 to 0.02, their running product in double
precision, and the respacing of `steps` timesteps with both ends kept."""


def alphas_cumprod(timesteps=1000):
    out, product = [], 1.0
    for t in range(timesteps):
        product *= 1.0 - (1e-4 + (0.02 - 1e-4) * t / (timesteps - 1))
        out.append(product)
    return out


def spaced_timesteps(steps, total=1000):
    return [int(round(i * (total - 1) / (steps - 1))) for i in range(steps)] if steps > 1 else [0]
