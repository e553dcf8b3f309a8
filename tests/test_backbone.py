import json

import pytest
import torch
from diffusers import StableDiffusionPipeline

from studio import StudioError
from studio.models.backbone import load_pipeline, save_pipeline
from studio.data import FASHION_MNIST_CLASSES
from studio.models.presets import tokenizer_corpus
from studio.models.tokenizer import train_clip_tokenizer


def test_tokenizer_vocabulary_is_real(tiny_pipeline):
    tok = tiny_pipeline.tokenizer
    # 512 byte tokens + BOS/EOS + learned merges; the transformers-5 trap gives 2
    assert 514 < len(tok) <= 1024
    assert tiny_pipeline.text_encoder.config.vocab_size == len(tok)
    ids = tok("a photo of an ankle boot").input_ids
    assert tok.convert_ids_to_tokens(ids)[1:-1] == ["a</w>", "photo</w>", "of</w>", "an</w>", "ankle</w>", "boot</w>"]
    # unseen text still encodes through bytes, never to the unknown token only
    odd = tok("zebra, é!").input_ids
    assert len(odd) > 4 and tok.decode(odd, skip_special_tokens=True).replace(" ", "") == "zebra,é!"
    assert tok.model_max_length == 77


def test_tokenizer_is_deterministic():
    corpus = tokenizer_corpus(FASHION_MNIST_CLASSES)
    a, b = train_clip_tokenizer(corpus), train_clip_tokenizer(corpus)
    assert a.get_vocab() == b.get_vocab()


def test_tiny_preset_sizes(tiny_pipeline):
    n = {k: sum(p.numel() for p in getattr(tiny_pipeline, k).parameters()) for k in ("unet", "vae", "text_encoder")}
    assert 0.5e6 < n["unet"] < 1.2e6 and 0.3e6 < n["vae"] < 1.0e6 and n["text_encoder"] < 100e3
    assert tiny_pipeline.unet.config.sample_size * tiny_pipeline.vae_scale_factor == 32


def test_save_load_round_trip_with_dtype(tiny_pipeline, tiny_pipeline_dir):
    assert json.loads((tiny_pipeline_dir / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert list((tiny_pipeline_dir / "unet").glob("*.safetensors"))
    pipe = load_pipeline(tiny_pipeline_dir, dtype="bfloat16")
    assert pipe.unet.dtype == torch.bfloat16
    for a, b in zip(tiny_pipeline.unet.parameters(), load_pipeline(tiny_pipeline_dir).unet.parameters()):
        assert torch.equal(a, b)
    plain = StableDiffusionPipeline.from_pretrained(str(tiny_pipeline_dir))
    assert len(plain.tokenizer) == len(tiny_pipeline.tokenizer)


def test_save_keeps_other_files(tiny_pipeline, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_pipeline(tiny_pipeline, tmp_path)
    assert (tmp_path / "config.json").read_text() == "{}"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary folder is gone
    load_pipeline(tmp_path)  # a run's config.json beside the pipeline does not confuse diffusers


def test_load_errors(tmp_path):
    with pytest.raises(StudioError, match="model_index.json"):
        load_pipeline(tmp_path)
    with pytest.raises(StudioError, match="model_index.json"):
        load_pipeline(tmp_path / "missing" / "dir")
    with pytest.raises(StudioError, match="hub id") as e:  # HF_HUB_OFFLINE=1: fails fast, one line
        load_pipeline("nobody-here/no-such-pipeline")
    assert "\n" not in str(e.value)


def test_bpe_merges_follow_sennrich_example():
    from collections import Counter

    from studio.models.tokenizer import learn_merges

    words = Counter({"low": 5, "lower": 2, "newest": 6, "widest": 3})
    # (e, s) and (s, t</w>) both occur 9 times; ties go to the smaller pair
    assert learn_merges(words, 3) == [("e", "s"), ("es", "t</w>"), ("l", "o")]
