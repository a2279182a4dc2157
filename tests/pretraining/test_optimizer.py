"""The pretraining optimizer: which parameters are decayed, the warmup-cosine schedule, and the
fused AdamW kernel giving the same update as the default one."""

import pytest
import torch
from torch import nn

from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.optimizer import build_optimizer, param_groups


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)               # weight decayed, bias not
        self.norm = nn.LayerNorm(4)               # never decayed
        self.frozen = nn.Linear(4, 4, bias=False)
        self.frozen.weight.requires_grad_(False)  # not given to the optimizer at all

    def forward(self, ids):
        return self.norm(self.proj(self.embed_tokens(ids))).square().mean()


def config(steps=100, warmup=10, fused=False) -> PretrainConfig:
    cfg = PretrainConfig()
    cfg.train.steps, cfg.optim.warmup_steps, cfg.optim.fused = steps, warmup, fused
    cfg.optim.lr, cfg.optim.min_lr_ratio, cfg.optim.weight_decay = 1e-2, 0.1, 0.1
    return cfg


def test_only_matrices_are_decayed_and_frozen_weights_are_left_out():
    model = Tiny()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(model.proj.weight)]
    assert {id(p) for p in no_decay["params"]} == {
        id(model.embed_tokens.weight), id(model.proj.bias), id(model.norm.weight),
        id(model.norm.bias)}


def test_schedule_warms_up_then_follows_the_cosine_to_the_floor():
    opt, sched = build_optimizer(Tiny(), config())
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)   # (s + 1) / warmup
    assert lrs[55] == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))                 # half way down
    assert lrs[100] == pytest.approx(1e-3)                                    # lr x min_lr_ratio


def test_fused_adamw_gives_the_default_update():
    ids = torch.randint(0, 10, (8, 5))
    weights = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = Tiny()
        opt, sched = build_optimizer(model, config(fused=fused))
        assert opt.defaults["fused"] is (True if fused else None)
        for _ in range(5):
            opt.zero_grad()
            model(ids).backward()
            opt.step()
            sched.step()
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.manual_seed(0)
    start = Tiny().state_dict()
    assert (weights[0]["proj.weight"] - start["proj.weight"]).abs().max() > 1e-3  # it did move
