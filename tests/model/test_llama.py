"""The Llama backbone (unimodal/model/llama.py): logits equal transformers' LlamaForCausalLM on
the same weights, and its parts against hand computations: RMSNorm, rotary embeddings (relative
positions), grouped-query attention, the key/value prefix of the cached sampler, checkpointing."""

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from unified_fixtures import causal_mask
from unimodal.model.llama import (LlamaBackbone, RMSNorm, RotaryEmbedding, apply_rope, attend,
                                  rotate_half)
from unimodal.model.unified import BackboneConfig


def backbone(seed: int = 0, **kw) -> LlamaBackbone:
    cfg = BackboneConfig(**{"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                            "intermediate_size": 64, **kw})
    torch.manual_seed(seed)
    model = LlamaBackbone(cfg.to_hf(vocab_size=50))
    model.init_weights(std=0.1)
    return model.eval()


@pytest.mark.parametrize("tied,kv_heads", [(False, 4), (True, 2)])
def test_backbone_matches_transformers_llama(tied, kv_heads):
    cfg = BackboneConfig(hidden_size=64, num_layers=3, num_heads=4, num_kv_heads=kv_heads,
                         intermediate_size=160, rope_theta=5000.0, tie_word_embeddings=tied)
    hf_cfg = cfg.to_hf(vocab_size=97)
    torch.manual_seed(0)
    ours = LlamaBackbone(hf_cfg)
    ours.init_weights(std=0.1)
    ref = LlamaForCausalLM(cfg.to_hf(vocab_size=97)).eval()
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    ids = torch.randint(0, 97, (2, 19))
    positions = torch.arange(19).expand(2, 19)
    hidden, _ = ours(ours.embed(ids), positions, causal_mask(ids))
    logits = F.linear(hidden, ours.head_weight)
    ref_logits = ref(input_ids=ids).logits
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_rms_norm_by_hand():
    norm = RMSNorm(4, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
    x = torch.tensor([[3.0, -4.0, 0.0, 0.0]])                   # root mean square 2.5
    torch.testing.assert_close(norm(x), torch.tensor([[1.2, -3.2, 0.0, 0.0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm(x.to(torch.bfloat16)).float(), norm(x), atol=2e-2, rtol=0)


def test_rotary_embedding_rotates_pairs_and_depends_on_relative_position():
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])               # (B, H, L, D) = (1, 1, 1, 4)
    assert rotate_half(x).tolist() == [[[[-3.0, -4.0, 1.0, 2.0]]]]
    cfg = BackboneConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=4,
                         intermediate_size=64, rope_theta=100.0).to_hf(vocab_size=10)
    cfg.head_dim = 8
    rope = RotaryEmbedding(cfg)
    torch.testing.assert_close(rope.inv_freq, 1.0 / 100.0 ** (torch.arange(0, 8, 2).float() / 8))
    cos, sin = rope(torch.tensor([[0, 1, 5]]), torch.float32)
    assert cos.shape == (1, 3, 8) and torch.equal(cos[0, 0], torch.ones(8)) and torch.equal(sin[0, 0], torch.zeros(8))
    # position p rotates the pair (i, i + D/2) by angle p * inv_freq[i]
    angle = 5 * rope.inv_freq[1]
    torch.testing.assert_close(cos[0, 2, 1], angle.cos())
    torch.testing.assert_close(sin[0, 2, 5], angle.sin())
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rope(torch.tensor([[pq]]), torch.float32)
        ck, sk = rope(torch.tensor([[pk]]), torch.float32)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    torch.testing.assert_close(score(7, 3), score(14, 10))      # only pq - pk matters
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_grouped_query_attention_shares_each_kv_head_between_its_query_heads():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mask = causal_mask(torch.zeros(2, 5, dtype=torch.long))
    expected = []
    for h in range(4):                                          # heads 0, 1 -> kv 0; 2, 3 -> kv 1
        scores = q[:, h] @ k[:, h // 2].transpose(-1, -2) / 8 ** 0.5
        scores = scores.masked_fill(~mask[:, 0], float("-inf"))
        expected.append(torch.softmax(scores, -1) @ v[:, h // 2])
    torch.testing.assert_close(attend(q, k, v, mask), torch.stack(expected, 1), atol=1e-5, rtol=1e-5)


def test_fused_projections_give_the_separate_projections_outputs_and_keys_values():
    """fuse_projections (the sampler's) concatenates q/k/v and gate/up in the right order: with
    grouped-query attention (k/v narrower than q) the hidden states and the cached keys/values
    equal the unfused model's, with and without a prefix; fusing twice is a no-op."""
    model = backbone()
    ids = torch.randint(0, 50, (2, 9))
    positions = torch.arange(9).expand(2, 9)
    expected, expected_kv = model(model.embed(ids), positions, causal_mask(ids))
    tail, tail_kv = model(model.embed(ids[:, 6:]), positions[:, 6:], causal_mask(ids)[:, :, 6:],
                          kv_prefix=[(k[:, :, :6], v[:, :, :6]) for k, v in expected_kv])
    model.fuse_projections()
    model.fuse_projections()
    layer = model.model.layers[0]
    assert not hasattr(layer.self_attn, "q_proj") and not hasattr(layer.mlp, "up_proj")
    assert layer.self_attn.qkv_proj.weight.shape == (4 * 8 + 2 * 2 * 8, 32)
    assert layer.mlp.gate_up_proj.weight.shape == (2 * 64, 32)
    fused, fused_kv = model(model.embed(ids), positions, causal_mask(ids))
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    for (k, v), (k_ref, v_ref) in zip(fused_kv, expected_kv):
        torch.testing.assert_close(k, k_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v, v_ref, atol=1e-5, rtol=1e-5)
    fused_tail, _ = model(model.embed(ids[:, 6:]), positions[:, 6:], causal_mask(ids)[:, :, 6:],
                          kv_prefix=[(k[:, :, :6], v[:, :, :6]) for k, v in fused_kv])
    torch.testing.assert_close(fused_tail, tail, atol=1e-5, rtol=1e-5)


def test_a_key_value_prefix_continues_the_sequence():
    """Running a prompt, then the rest with the prompt's keys/values as prefix, gives the hidden
    states of one full run (the sampler's cache); the prefix is not extended."""
    model = backbone()
    ids = torch.randint(0, 50, (2, 9))
    positions = torch.arange(9).expand(2, 9)
    full, _ = model(model.embed(ids), positions, causal_mask(ids))
    head, prefix = model(model.embed(ids[:, :6]), positions[:, :6], causal_mask(ids[:, :6]))
    rest_mask = causal_mask(ids)[:, :, 6:]                      # rows 6..8 over all 9 keys
    tail, new_kv = model(model.embed(ids[:, 6:]), positions[:, 6:], rest_mask, kv_prefix=prefix)
    torch.testing.assert_close(torch.cat([head, tail], 1), full, atol=1e-5, rtol=1e-5)
    assert len(prefix) == 2 and prefix[0][0].shape == (2, 2, 6, 8)       # (B, kv heads, L, D)
    assert new_kv[0][0].shape == (2, 2, 3, 8)                   # only the new positions


def test_checkpointing_changes_nothing_and_weights_init_and_tie():
    model = backbone().train()
    ids = torch.randint(0, 50, (2, 7))
    positions = torch.arange(7).expand(2, 7)

    def loss_and_grads():
        model.zero_grad()
        hidden, _ = model(model.embed(ids), positions, causal_mask(ids))
        loss = F.linear(hidden, model.head_weight).logsumexp(-1).mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain = loss_and_grads()
    model.gradient_checkpointing = True
    checkpointed = loss_and_grads()
    torch.testing.assert_close(checkpointed[0], plain[0])
    for a, b in zip(plain[1], checkpointed[1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert model.config.head_dim == 8                           # hidden 32 / 4 heads
    assert abs(model.model.embed_tokens.weight.std().item() - 0.1) < 0.01
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in model.modules()
               if isinstance(m, RMSNorm))
    tied = backbone(tie_word_embeddings=True)
    assert tied.head_weight is tied.model.embed_tokens.weight
    assert backbone().head_weight is not backbone().model.embed_tokens.weight
