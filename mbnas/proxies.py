"""Zero-cost proxies: scores of an untrained network from one or two batches, higher is better.

Each proxy is a function ``(model, images, labels) -> float`` over a freshly initialised
network. It scores a copy in training mode (BatchNorm on batch statistics) with dropout and
stochastic depth off, so the model itself, its BatchNorm statistics included, is left as it was
and the score is repeatable.

- ``naswot`` (Mellor et al. 2021): log|det K| of the kernel of binary activation codes, K[i, j]
  = the number of units on which images i and j fall on the same side of zero.
- ``swap`` (Peng et al. 2024, SWAP-Score without its size regulariser): the number of distinct
  sample-wise activation patterns, a unit's pattern being the signs of its input over the first
  ``SWAP_SAMPLES`` images.
- ``expressivity`` (Lee & Ham 2024, AZ-NAS): per block, the entropy of the normalised
  eigenvalues of the channel covariance of its output over the batch and all positions (how
  evenly the block spreads its features over directions), added over blocks.
- ``zico`` (Li et al. 2023): per layer, the log of the summed ratio of the mean absolute gradient
  to its standard deviation across two half batches, added over layers.
- ``grad_norm``, ``snip`` (Abdelfattah et al. 2021): summed gradient norms, and summed
  |weight x gradient|, of the cross-entropy loss.
- ``synflow`` (Tanaka et al. 2020): summed |weight x gradient| of the output sum of the network
  with absolute weights on an all-ones input (no data needed), in double precision.
- ``jacob_cov`` (Mellor et al. 2020): how decorrelated the input Jacobians of the images are.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from mbnas.nn.blocks import Block, StochasticDepth

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]
# Activations whose input sign is the "code" of a unit for NASWOT (gates such as sigmoid are
# not rectifiers and are left out).
RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU)
# Images whose sign patterns SWAP counts. With many more, nearly every unit's pattern is unique
# and the count is just the number of units; 16 ranked best of 16-48 on NAS-Bench-Macro, and
# fewer saturate (all 2^n patterns occur) in any network of the shipped spaces (BENCHMARKS.md).
SWAP_SAMPLES = 16


def scoring_copy(model: nn.Module) -> nn.Module:
    """A copy in training mode with every random layer (dropout, stochastic depth) off."""
    probe = copy.deepcopy(model).train()
    for module in probe.modules():
        if isinstance(module, (nn.Dropout, StochasticDepth)):
            module.eval()
    return probe


def _weights(model: nn.Module) -> Iterator[nn.Parameter]:
    """The weights of every conv and linear layer: what the gradient-based proxies score."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            yield module.weight


def _run_with_hooks(model: nn.Module, images: torch.Tensor, hooks: list[RemovableHandle]
                    ) -> None:
    """Run ``model`` on ``images``, then remove ``hooks`` (also when the forward fails)."""
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()


def _visit_rectifier_inputs(model: nn.Module, images: torch.Tensor,
                            visit: Callable[[torch.Tensor], None]) -> None:
    """Run ``model`` on ``images``, handing the input of every rectifier to ``visit``."""
    _run_with_hooks(model, images, [
        module.register_forward_pre_hook(lambda _module, inputs: visit(inputs[0]))
        for module in model.modules() if isinstance(module, RECTIFIERS)])


@torch.no_grad()
def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """log|det K| of the binary activation-code kernel over the batch (Mellor et al. 2021)."""
    count = images.shape[0]
    kernel = torch.zeros(count, count, dtype=torch.float64, device=images.device)

    def add_codes(unit_inputs: torch.Tensor) -> None:
        # Units where both images are on, plus units where both are off, from one product:
        # both_off = units - on_i - on_j + both_on. Float32 counts are exact below 2^24 units.
        codes = (unit_inputs.reshape(count, -1) > 0).to(torch.float32)
        both_on = codes @ codes.T
        on = codes.sum(dim=1)
        kernel.add_((2 * both_on - on[:, None] - on[None, :] + codes.shape[1]).double())

    _visit_rectifier_inputs(scoring_copy(model), images, add_codes)
    return float(torch.linalg.slogdet(kernel)[1])


@torch.no_grad()
def swap(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Distinct sample-wise activation patterns over ``SWAP_SAMPLES`` images (Peng et al. 2024)."""
    batch = images[:SWAP_SAMPLES]
    count = batch.shape[0]
    # A unit's pattern (its sign on each image) packed into the bits of one integer.
    bits = 2 ** torch.arange(count, dtype=torch.int64, device=images.device)
    patterns: list[torch.Tensor] = []

    def add_patterns(unit_inputs: torch.Tensor) -> None:
        signs = (unit_inputs.reshape(count, -1) > 0).to(torch.int64)
        patterns.append((signs * bits[:, None]).sum(dim=0))

    _visit_rectifier_inputs(scoring_copy(model), batch, add_patterns)
    return float(torch.unique(torch.cat(patterns)).numel()) if patterns else 0.0


def eigenvalue_entropy(features: torch.Tensor) -> float:
    """Entropy of the eigenvalue distribution of the channel covariance of an N,C,H,W map."""
    channels = features.transpose(0, 1).reshape(features.shape[1], -1)
    channels = channels - channels.mean(dim=1, keepdim=True)
    eigenvalues = torch.linalg.eigvalsh((channels @ channels.T).double()).clamp(min=0)
    total = eigenvalues.sum()
    if total <= 0:  # a dead block (all outputs constant) spreads over no direction
        return 0.0
    shares = eigenvalues[eigenvalues > 0] / total
    return float(-(shares * shares.log()).sum())


@torch.no_grad()
def expressivity(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None
                 ) -> float:
    """Summed eigenvalue entropy of every block's output feature map (AZ-NAS expressivity)."""
    entropies: list[float] = []
    probe = scoring_copy(model)
    _run_with_hooks(probe, images, [
        module.register_forward_hook(
            lambda _module, _inputs, output: entropies.append(eigenvalue_entropy(output)))
        for module in probe.modules() if isinstance(module, Block)])
    return sum(entropies)


def _loss_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor
                    ) -> list[torch.Tensor]:
    """Per conv/linear weight of ``model``, the cross-entropy gradient (taken on a copy)."""
    probe = scoring_copy(model)
    F.cross_entropy(probe(images), labels).backward()
    return [w.grad if w.grad is not None else torch.zeros_like(w) for w in _weights(probe)]


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over layers of the L2 norm of the loss gradient (Abdelfattah et al. 2021)."""
    return float(sum(g.norm() for g in _loss_gradients(model, images, labels)))


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum of |weight x loss gradient| over every weight (SNIP saliency, summed)."""
    gradients = _loss_gradients(model, images, labels)
    return float(sum((g * w.detach()).abs().sum() for g, w in zip(gradients, _weights(model))))


def zico(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over layers of log(Σ mean|g| / std g), gradients from two halves of the batch."""
    half = images.shape[0] // 2
    batches = [(images[:half], labels[:half]), (images[half:], labels[half:])]
    per_batch = [_loss_gradients(model, x, y) for x, y in batches]
    score = 0.0
    for layer in zip(*per_batch):
        stacked = torch.stack(layer)
        std = stacked.std(dim=0)
        mean_abs = stacked.abs().mean(dim=0)
        nonzero = std > 0
        total = float((mean_abs[nonzero] / std[nonzero]).sum())
        if total > 0:
            score += math.log(total)
    return score


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Synaptic flow of the network with absolute weights on an all-ones input (Tanaka 2020)."""
    probe = copy.deepcopy(model).double().eval()  # eval: BN as a fixed affine map, no statistics
    with torch.no_grad():
        for parameter in probe.parameters():
            parameter.abs_()
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
    probe(ones).sum().backward()
    with torch.no_grad():
        return float(sum((w.grad * w).abs().sum() for w in _weights(probe) if w.grad is not None))


def jacob_cov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None
              ) -> float:
    """Negative spread of the eigenvalues of the correlation of per-image input Jacobians."""
    inputs = images.detach().clone().requires_grad_(True)
    scoring_copy(model)(inputs).sum().backward()
    jacobians = inputs.grad.reshape(images.shape[0], -1).double()
    correlation = torch.nan_to_num(torch.corrcoef(jacobians))
    eigenvalues = torch.linalg.eigvalsh(correlation).clamp(min=0)
    return -float((torch.log(eigenvalues + 1e-5) + 1.0 / (eigenvalues + 1e-5)).sum())


PROXIES: dict[str, Proxy] = {
    "naswot": naswot,
    "swap": swap,
    "expressivity": expressivity,
    "zico": zico,
    "grad_norm": grad_norm,
    "snip": snip,
    "synflow": synflow,
    "jacob_cov": jacob_cov,
}
