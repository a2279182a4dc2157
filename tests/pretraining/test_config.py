"""The pretraining config: gradient clipping reaches DeepSpeed (a guard from issue 11, part 7);
overlap_comm follows the world size unless set."""


def test_gradient_clipping_reaches_deepspeed():
    from unimodal.pretraining.config import PretrainConfig

    cfg = PretrainConfig()
    assert cfg.deepspeed_config(1)["gradient_clipping"] == 1.0
    cfg.deepspeed = {"gradient_clipping": 0.5}
    assert cfg.deepspeed_config(1)["gradient_clipping"] == 0.5


def test_overlap_comm_is_on_only_with_communication_and_an_explicit_value_wins():
    # On one GPU DeepSpeed's overlap_comm synchronises the device before every gradient bucket
    # and overlaps nothing; with several ranks it overlaps the reductions with the backward.
    from unimodal.pretraining.config import PretrainConfig

    cfg = PretrainConfig()
    assert cfg.deepspeed_config(1)["zero_optimization"]["overlap_comm"] is False
    assert cfg.deepspeed_config(2)["zero_optimization"]["overlap_comm"] is True
    assert cfg.deepspeed_config(1)["zero_optimization"]["stage"] == 2
    cfg.deepspeed = {"zero_optimization": {"overlap_comm": True}}
    assert cfg.deepspeed_config(1)["zero_optimization"]["overlap_comm"] is True
    cfg.deepspeed = {"zero_optimization": {"stage": 1, "overlap_comm": False}}
    assert cfg.deepspeed_config(2)["zero_optimization"] == {
        "stage": 1, "overlap_comm": False, "contiguous_gradients": True}
