"""FusedAdam: torch's fused Adam update, bit for bit, without torch's per-step bookkeeping."""

from __future__ import annotations

import pytest
import torch

from crane.ops.adam import FusedAdam, make_adam


def _tables(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(50, 8, generator=generator)),
            torch.nn.Parameter(torch.randn(30, 8, generator=generator)),
            torch.nn.Parameter(torch.randn(8, generator=generator))]


def _set_grads(params: list[torch.nn.Parameter], step: int, skip: int | None = None) -> None:
    generator = torch.Generator().manual_seed(1000 + step)
    for index, param in enumerate(params):
        param.grad = None if index == skip else torch.randn(param.shape, generator=generator)


def _run(optimizer_cls, steps: int, skip_at: dict[int, int] | None = None,
         weight_decay: float = 0.0, scheduled: bool = False, **options):
    params = _tables(0)
    optimizer = optimizer_cls(params, lr=0.01, weight_decay=weight_decay, fused=True, **options)
    scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.9 ** epoch)
                 if scheduled else None)
    direct = 0
    for step in range(steps):
        _set_grads(params, step, (skip_at or {}).get(step))
        if isinstance(optimizer, FusedAdam) and optimizer._step_directly():
            direct += 1
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return params, optimizer, direct


@pytest.mark.parametrize("options", [
    {}, {"weight_decay": 0.1}, {"scheduled": True}, {"maximize": True},
    {"decoupled_weight_decay": True, "weight_decay": 0.1},
], ids=["plain", "l2", "lambda-lr", "maximize", "adamw"])
def test_same_update_as_torch_bit_for_bit(options):
    expected, _, _ = _run(torch.optim.Adam, 12, **options)
    got, _, direct = _run(FusedAdam, 12, **options)
    assert direct == 11  # every step after the first, which creates the state
    for want, have in zip(expected, got):
        assert torch.equal(want, have)


def test_missing_gradient_falls_back_to_torch():
    """torch's step leaves a parameter without a gradient untouched (state included)."""
    skips = {3: 1, 4: 1, 7: 0}
    expected, torch_opt, _ = _run(torch.optim.Adam, 10, skip_at=skips)
    got, fused_opt, direct = _run(FusedAdam, 10, skip_at=skips)
    assert direct == 10 - 1 - len(skips)
    for want, have in zip(expected, got):
        assert torch.equal(want, have)
    for want, have in zip(torch_opt.state.values(), fused_opt.state.values()):
        assert torch.equal(want["step"], have["step"])


def test_step_call_goes_direct_and_keeps_hooks():
    torch.optim.Adam(_tables(1), lr=0.01)  # wraps Adam.step in the hooks, as any Adam does
    params = _tables(0)
    optimizer = make_adam(params, 0.01, 0.0)
    assert isinstance(optimizer, FusedAdam)
    seen = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: seen.append(1))
    for step in range(3):
        _set_grads(params, step)
        optimizer.step()
    assert len(seen) == 3
    assert float(optimizer.state[params[0]]["step"]) == 3.0


def test_resume_from_state_dict_continues_the_same_run():
    straight, _, _ = _run(FusedAdam, 8)
    params = _tables(0)
    first = FusedAdam(params, lr=0.01, fused=True)
    for step in range(5):
        _set_grads(params, step)
        first.step()
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    second = FusedAdam(copies, lr=0.01, fused=True)
    second.load_state_dict(first.state_dict())
    for step in range(5, 8):
        _set_grads(copies, step)
        assert second._step_directly()
    for want, have in zip(straight, copies):
        assert torch.equal(want, have)


def test_options_without_a_direct_path_use_torch():
    params = _tables(0)
    optimizer = FusedAdam(params, lr=0.01, fused=True, amsgrad=True)
    _set_grads(params, 0)
    optimizer.step()
    _set_grads(params, 1)
    assert not optimizer._step_directly()
