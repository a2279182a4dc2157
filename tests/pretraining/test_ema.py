"""EMA direction: the average moves a small step towards the weights (a guard from issue 11,
part 7, against a swapped decay)."""

import torch


def test_ema_moves_a_small_step_towards_the_weights():
    from unimodal.pretraining.ema import EMA

    layer = torch.nn.Linear(2, 2, bias=False)
    torch.nn.init.zeros_(layer.weight)
    ema = EMA(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(layer)
    torch.testing.assert_close(ema.state_dict()["weight"], torch.full((2, 2), 0.1))  # not 0.9
