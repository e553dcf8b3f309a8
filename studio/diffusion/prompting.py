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


class PromptCache:
    """Embeddings of a frozen text encoder, computed once per distinct prompt and reused.

    Each prompt is encoded on its own, so an embedding does not depend on the batch it first came
    in (resume and several processes stay exact). At most ``limit`` prompts are kept (a dataset of
    distinct captions, as COCO's, then costs what it cost without a cache): for SD 1.5 an entry is
    77 x 768 values, 236 kB in float32, so the default bound is about 240 MB.
    """

    def __init__(self, tokenizer, text_encoder, limit: int = 1024):
        self.tokenizer, self.text_encoder, self.limit = tokenizer, text_encoder, limit
        self.kept: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, prompts: list[str], device, dtype=torch.float32) -> torch.Tensor:
        rows = []
        for p in prompts:
            emb = self.kept.get(p)
            if emb is None:
                emb = encode_prompts(self.tokenizer, self.text_encoder, [p], device)[0]
                if len(self.kept) < self.limit:
                    self.kept[p] = emb
            rows.append(emb)
        return torch.stack(rows).to(device=device, dtype=dtype)
