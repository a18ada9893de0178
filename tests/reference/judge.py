"""One verdict for the reference tier: an output against its PyTorch
reference, the largest error relative to the largest reference value and the
RMS error relative to the reference's RMS, printed as a line; a failure is
appended to `failures`."""
import numpy as np
import torch


def judge(failures, name, out, reference, bound, metric="max"):
    out = torch.as_tensor(np.asarray(out, dtype=np.float64))
    reference = torch.as_tensor(np.asarray(reference, dtype=np.float64))
    if out.shape != reference.shape:
        failures.append(f"{name}: shape {tuple(out.shape)}, expected {tuple(reference.shape)}")
        print("FAIL", failures[-1], flush=True)
        return
    largest = reference.abs().max().item()
    error = (out - reference).abs().max().item() / (largest if largest > 0 else 1.0)
    rms = ((out - reference).norm() / reference.norm()).item() if reference.norm() > 0 else 0.0
    measured = error if metric == "max" else rms
    verdict = "ok" if measured <= bound else "FAIL"
    print(f"{verdict:4} {name}: max {error:.2e}, rms {rms:.2e} (bound on {metric}: {bound:.0e})", flush=True)
    if measured > bound:
        failures.append(name)
