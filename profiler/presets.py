"""Published model shapes (spec key `preset`): each names a block family and the keys
that size it. Keys given beside a preset override its values; the rows record the
resolved values (their cfg_ columns), and `cfg_preset` names where they came from.

Plain data, no JAX: the spec validates presets before anything is imported.
"""

from __future__ import annotations

import difflib
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Meta Llama 3 8B, config.json of meta-llama/Meta-Llama-3-8B on Hugging Face (and the
    # Llama 3 model card): hidden_size 4096, intermediate_size 14336, num_hidden_layers 32,
    # num_attention_heads 32, num_key_value_heads 8, vocab_size 128256.
    "llama3-8b": dict(block="llama", layers=32, hidden=4096, heads=32, kv_heads=8, mlp=14336, vocab=128256),
    # Meta Llama 3 70B, config.json of meta-llama/Meta-Llama-3-70B: hidden_size 8192,
    # intermediate_size 28672, num_hidden_layers 80, num_attention_heads 64,
    # num_key_value_heads 8, vocab_size 128256.
    "llama3-70b": dict(block="llama", layers=80, hidden=8192, heads=64, kv_heads=8, mlp=28672, vocab=128256),
    # Mistral AI Mixtral 8x7B, config.json of mistralai/Mixtral-8x7B-v0.1: hidden_size
    # 4096, intermediate_size 14336, num_hidden_layers 32, num_attention_heads 32,
    # num_key_value_heads 8, vocab_size 32000, num_local_experts 8, num_experts_per_tok 2.
    "mixtral-8x7b": dict(block="moe", layers=32, hidden=4096, heads=32, kv_heads=8, mlp=14336, vocab=32000,
                         experts=8, top_k=2),
    # Test sizes of the same shape (grouped-query attention, an MLP wider than hidden),
    # small enough to compile in seconds; not a published model.
    "llama-tiny": dict(block="llama", layers=2, hidden=64, heads=4, kv_heads=2, mlp=128, vocab=256),
    "moe-tiny": dict(block="moe", layers=2, hidden=64, heads=4, kv_heads=2, mlp=128, vocab=256, experts=4, top_k=2),
}


def expand(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with its preset's keys filled in where `values` does not give them.
    ValueError naming the closest preset if the name is unknown."""
    name = values.get("preset")
    if not name:
        return values
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS, n=1, cutoff=0.4)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(PRESETS)}"
        raise ValueError(f"key 'preset': unknown preset {name!r}{hint}")
    return PRESETS[name] | values
