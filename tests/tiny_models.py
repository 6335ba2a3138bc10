"""Tiny, randomly initialised stand-ins for the zoo models, saved in the same folder layout as their hub repos.

Each `make_tiny_<family>(folder)` writes what `$XRAY_MODEL_DIR/<name>/` holds for the real model (same classes,
same file names, same preprocessing config keys), only a few kilobytes large, so tests load them through the
very path the real weights take, offline. `install_tiny_models(model_dir)` fills a whole XRAY_MODEL_DIR.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP's normalisation, as both CLIP repos declare it
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
WORDS = ["chest", "knee", "hand", "skull", "spine", "pelvis", "x", "ray", "radiograph", "frontal", "lateral",
         "view", "of", "the", "a", "normal", "fracture", "pneumonia", "lung", "bone"]
BIOMEDCLIP_TEXT_HUB_ID = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2))


def make_tiny_clip(folder: Path) -> None:
    """A CLIPModel (1 layer per tower, 16-d joint space) with a byte-level CLIP tokenizer, like openai/clip-vit-base-patch32."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # CLIP's BPE vocabulary starts with the 256 byte symbols, then the same with the end-of-word mark;
    # without merges every word is spelled letter by letter, which is all a test needs.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet + [s + "</w>" for s in alphabet])}
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(folder)

    _seed()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    # The hub repo still ships the legacy feature-extractor file; keep that form so it is what gets tested.
    _write_json(folder / "preprocessor_config.json", {
        "feature_extractor_type": "CLIPFeatureExtractor", "do_resize": True, "size": 32, "resample": 3,
        "do_center_crop": True, "crop_size": 32, "do_normalize": True,
        "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD,
    })


def make_tiny_biomedclip(folder: Path) -> None:
    """An open_clip CustomTextCLIP shaped like BiomedCLIP: timm ViT image tower, BERT text tower, MLP projection.

    Layout: open_clip_config.json + open_clip_pytorch_model.bin (as in the hub repo), plus the text tower's
    config.json and tokenizer files, which the real repo leaves to microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract.
    """
    import open_clip
    import torch
    from transformers import BertConfig, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + list("abcdefghijklmnopqrstuvwxyz"))}
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(folder)
    BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=64, pad_token_id=0).save_pretrained(folder)

    text_cfg = {  # the real config, with the text tower shrunk through config.json above
        "hf_model_name": BIOMEDCLIP_TEXT_HUB_ID, "hf_tokenizer_name": BIOMEDCLIP_TEXT_HUB_ID,
        "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 32,
    }
    vision_cfg = {  # timm's 0.4M-parameter test ViT (160 px) stands in for vit_base_patch16_224
        "timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear",
        "image_size": 160,
    }
    _write_json(folder / "open_clip_config.json", {
        "model_cfg": {"embed_dim": 16, "vision_cfg": vision_cfg, "text_cfg": text_cfg},
        "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD},
    })
    _seed()
    local_text_cfg = {**text_cfg, "hf_model_name": str(folder), "hf_model_pretrained": False}
    model = open_clip.CustomTextCLIP(embed_dim=16, vision_cfg=vision_cfg, text_cfg=local_text_cfg)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")


def make_tiny_resnet(folder: Path) -> None:
    """A two-stage ResNetForImageClassification (16-d pooled features), saved like microsoft/resnet-50."""
    from transformers import ResNetConfig, ResNetForImageClassification

    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3)
    ResNetForImageClassification(config).eval().save_pretrained(folder)
    _write_json(folder / "preprocessor_config.json", {
        "feature_extractor_type": "ConvNextFeatureExtractor", "do_resize": True, "size": 32, "crop_pct": 0.875,
        "resample": 3, "do_normalize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
    })


def make_tiny_densenet(folder: Path) -> None:
    """timm densenet121 with two one-layer dense blocks, exported with timm's own hub writer (config.json + model.safetensors)."""
    import timm
    from timm.models import save_for_hf

    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    model_args = {"growth_rate": 4, "block_config": [1, 1]}
    model = timm.create_model("densenet121", pretrained=False, num_classes=5, **model_args).eval()
    save_for_hf(model, folder, model_args=model_args, safe_serialization=True,
                data_config={"input_size": (3, 32, 32), "crop_pct": 0.875, "interpolation": "bicubic"})


def make_tiny_vit(folder: Path) -> None:
    """A one-layer ViTModel (32-d, with the pooler the in21k checkpoint carries), saved like google/vit-base-patch16-224-in21k."""
    from transformers import ViTConfig, ViTModel

    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    ViTModel(config).eval().save_pretrained(folder)
    _write_json(folder / "preprocessor_config.json", {
        "feature_extractor_type": "ViTFeatureExtractor", "do_resize": True, "size": 32, "resample": 2,
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    })


def make_tiny_dinov2(folder: Path) -> None:
    """A one-layer Dinov2Model (32-d tokens), saved like facebook/dinov2-small."""
    from transformers import Dinov2Config, Dinov2Model

    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                          image_size=32, patch_size=8)
    Dinov2Model(config).eval().save_pretrained(folder)
    _write_json(folder / "preprocessor_config.json", {
        "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 36},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": 32, "width": 32}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
        "do_convert_rgb": True,
    })


# Registry name -> builder, for tests that need `$XRAY_MODEL_DIR/<name>/` filled.
TINY_MODELS: dict[str, Callable[[Path], None]] = {
    "clip-vit-b32": make_tiny_clip,
    "biomedclip": make_tiny_biomedclip,
    "resnet50": make_tiny_resnet,
    "densenet121": make_tiny_densenet,
    "vit-b16": make_tiny_vit,
    "dinov2-small": make_tiny_dinov2,
}


def install_tiny_models(model_dir: Path, names: Iterable[str] | None = None) -> Path:
    """Write tiny models into `model_dir/<name>/` (all six by default); point XRAY_MODEL_DIR at `model_dir`."""
    model_dir = Path(model_dir)
    for name in names if names is not None else TINY_MODELS:
        TINY_MODELS[name](model_dir / name)
    return model_dir
