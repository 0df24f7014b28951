"""Tiny random vision-language models built offline from configs (LLaVA with a tiny CLIP
tower, Qwen2.5-VL), saved to a folder with a WordLevel tokenizer, a chat template and an
image processor, so tests load them by path exactly like a hub model. Also tiny image sets:
an ``images:DIR`` class folder and a VL-ICL ``open_mi`` layout, written with pillow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LABELS = ("dax", "blicket", "wug", "zorp")
"""Class names of the tiny image sets (all in the tiny vocabulary)."""
WORDS = (
    "system",
    "user",
    "assistant",
    "USER",
    "ASSISTANT",
    "SYSTEM",
    ":",
    "This",
    "is",
    "a",
    "Answer",
    "the",
    "question",
    "with",
    "single",
    "word",
    "or",
    "phase",
    ".",
    "What",
    "this",
    "?",
    *LABELS,
)

QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
QWEN_SPECIAL = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def word_tokenizer(special: tuple[str, ...], template: str | None, words: tuple[str, ...] = WORDS):
    """A WordLevel tokenizer over ``words`` with ``special`` tokens and a chat template (the
    offline tokenizer of every tiny test model: TransformerLens needs ``name_or_path`` and
    ``add_bos_token``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = ("<unk>", "<pad>", "<s>", "</s>")
    vocab = {t: i for i, t in enumerate((*base, *special, *words))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        add_bos_token=True,
        name_or_path="tiny",
    )
    if special:
        tok.add_special_tokens({"additional_special_tokens": list(special)})
    if template is not None:
        tok.chat_template = template
    return tok


SPECIAL_IDS = {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 1}
"""The ids of :func:`word_tokenizer`'s ``<s>``, ``</s>`` and ``<pad>``."""


def tiny_decoder(vocab_size: int, hidden_size: int, max_positions: int, **extra) -> dict:
    """The text-model config every tiny test model shares: 2 layers, 4 query heads over 2
    key/value heads (GQA), an MLP twice as wide; ``extra`` adds keys (token ids, rope)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
        **extra,
    }


TINY_VISION = {"hidden_size": 32, "intermediate_size": 64}
"""The widths of both tiny vision towers (2 layers, 2 heads each)."""


def _eager(model):
    model.config._attn_implementation = "eager"
    return model.eval()


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """A 2-layer LLaVA (Llama text model with GQA, 2-layer CLIP tower, 16 px images, 4 image tokens)."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = word_tokenizer(("<image>",), LLAVA_TEMPLATE)
    vision = CLIPVisionConfig(
        **TINY_VISION, num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=8
    )
    text = LlamaConfig(**tiny_decoder(len(tok), 64, 512, **SPECIAL_IDS))
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = _eager(LlavaForConditionalGeneration(config))
    images = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=1,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_tiny_qwen(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2.5-VL (GQA, mrope) with a 2-layer vision tower; images of 4-6 merged tokens.

    Its full processor needs torchvision (video processor), so only the PIL image processor
    is saved: the loader falls back to it and expands the image pad token by hand.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = word_tokenizer(QWEN_SPECIAL, QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config=tiny_decoder(
            len(tok),
            64,
            1024,
            **SPECIAL_IDS,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
        ),
        vision_config=dict(
            **TINY_VISION,
            depth=2,
            num_heads=2,
            out_hidden_size=64,
            fullatt_block_indexes=[1],
            window_size=56,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = _eager(Qwen2_5_VLForConditionalGeneration(config))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 84).save_pretrained(folder)
    return folder


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] | None = None) -> Path:
    from PIL import Image

    w, h = size or (int(rng.integers(30, 90)), int(rng.integers(30, 90)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_class_folder(folder: Path, n_classes: int = 3, per_class: int = 3, seed: int = 0) -> Path:
    """``folder/<label>/<k>.png`` for the first ``n_classes`` labels (random sizes)."""
    rng = np.random.default_rng(seed)
    for label in LABELS[:n_classes]:
        for k in range(per_class):
            write_image(folder / label / f"{k}.png", rng)
    return folder


def write_open_mi(folder: Path, n_queries: int = 4, shots: int = 2, seed: int = 0) -> Path:
    """A VL-ICL open_mi layout: ``query.json`` and ``{shots}-shot.json`` with images under
    ``folder/images`` (paths in the JSON relative to the folder's parent, as in VL-ICL)."""
    rng = np.random.default_rng(seed)
    base = folder.name
    classes = list(LABELS[:3])
    bank = {c: {"images": [f"{base}/images/support_{c}_{k}.png" for k in range(shots + 1)]} for c in classes}
    for c in classes:
        for rel in bank[c]["images"]:
            write_image(folder.parent / rel, rng)
    queries, fixed = [], []
    for q in range(n_queries):
        answer = classes[q % len(classes)]
        rel = f"{base}/images/query_{q}.png"
        write_image(folder.parent / rel, rng)
        queries.append(
            {
                "id": q,
                "image": [rel],
                "question": "What is this ?",
                "answer": answer,
                "classes": classes,
                "support": bank,
            }
        )
        other = classes[(q + 1) % len(classes)]
        demos = [
            {"image": [bank[c]["images"][r]], "answer": c} for r in range(shots) for c in (other, answer)
        ]
        fixed.append({"query": {"image": [rel], "answer": answer}, "support": {f"{shots}-shot": demos}})
    (folder / "query.json").write_text(json.dumps(queries))
    (folder / f"{shots}-shot.json").write_text(json.dumps(fixed))
    return folder
