"""The pretraining config: gradient clipping reaches DeepSpeed (a guard from issue 11, part 7)."""


def test_gradient_clipping_reaches_deepspeed():
    from unimodal.pretraining.config import PretrainConfig

    cfg = PretrainConfig()
    assert cfg.deepspeed_config(1)["gradient_clipping"] == 1.0
    cfg.deepspeed = {"gradient_clipping": 0.5}
    assert cfg.deepspeed_config(1)["gradient_clipping"] == 0.5
