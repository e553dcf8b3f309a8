"""Text conditioning exactly as diffusers' ``StableDiffusionPipeline.encode_prompt`` does it.

Prompts are padded to ``tokenizer.model_max_length`` and truncated; the attention mask is
passed only if the text encoder's config asks for it; the embedding is the last hidden state.
The unconditional embedding for classifier-free guidance is that of the empty prompt "".
"""

from __future__ import annotations

import torch


def tokenize(tokenizer, prompts: list[str]) -> dict:
    return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt")


def encode_prompts(tokenizer, text_encoder, prompts: list[str], device=None) -> torch.Tensor:
    """(len(prompts), model_max_length, hidden) text embeddings."""
    device = device or next(text_encoder.parameters()).device
    tok = tokenize(tokenizer, prompts)
    use_mask = getattr(getattr(text_encoder, "config", None), "use_attention_mask", False)
    mask = tok.attention_mask.to(device) if use_mask else None
    return text_encoder(tok.input_ids.to(device), attention_mask=mask)[0]
