"""The checkpoints of a series (``mmicl series``): finding them (local folders by glob or a
hub model's revisions, the step read from the name or the config) and checking them before
any is scored (readable weights, one architecture, one tokenizer), each failure a ConfigError
naming the checkpoint."""

from __future__ import annotations

import glob
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmicl_interp.config import ConfigError
from mmicl_interp.io import CorruptFileError, read_json

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
ARCH_KEYS = (
    "model_type", "architectures", "vocab_size", "hidden_size", "n_embd", "d_model", "num_hidden_layers",
    "n_layer", "num_layers", "num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size",
    "n_inner", "head_dim", "rotary_pct", "partial_rotary_factor", "max_position_embeddings", "n_positions",
    "tie_word_embeddings", "use_parallel_residual",
)  # fmt: skip
"""config.json fields that must agree across a series (those a config has)."""
STEP_NAME = re.compile(r"(?:^|[_\-])(?:step|checkpoint|ckpt)[_\-]?(\d+)$|^step(\d+)$", re.IGNORECASE)
HUB_LIGHT_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]
"""A revision's config and tokenizer files (fetched before any weights)."""


@dataclass
class Checkpoint:
    """One checkpoint of a series: its step, where it is, and what identifies its files."""

    step: int
    path: Path | None
    """The local folder (for a hub revision: None until fetched)."""
    label: str
    """How the user named it (a folder, or ``name@revision``)."""
    revision: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- finding checkpoints
def _step_of_name(name: str) -> int | None:
    m = STEP_NAME.search(name)
    if not m:
        return None
    return int(m.group(1) if m.group(1) is not None else m.group(2))


def _step_of_folder(folder: Path) -> int | None:
    step = _step_of_name(folder.name)
    if step is not None:
        return step
    for name, keys in (("trainer_state.json", ("step", "global_step")), ("config.json", ("step",))):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            for key in keys:
                if isinstance(data.get(key), int):
                    return int(data[key])
    return None


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def local_checkpoints(sources: list[str]) -> list[Checkpoint]:
    """The checkpoints named by folders, globs, or one folder holding ``step_*`` folders."""
    folders: list[Path] = []
    for source in sources:
        if _is_glob(source):
            hits = sorted(Path(p) for p in glob.glob(source) if Path(p).is_dir())
            if not hits:
                raise ConfigError("model", f"{source}: no folder matches")
            folders += hits
            continue
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ConfigError(
                "model", f"{source}: no such checkpoint folder (a hub model needs --revisions step1000,...)"
            )
        if not (path / "config.json").exists() and len(sources) == 1:
            inner = sorted(p for p in path.iterdir() if p.is_dir() and _step_of_name(p.name) is not None)
            if not inner:
                raise ConfigError(
                    "model", f"{source}: neither a checkpoint (config.json) nor a folder of step_* ones"
                )
            folders += inner
            continue
        folders.append(path)
    out, seen = [], {}
    for folder in dict.fromkeys(folders):
        step = _step_of_folder(folder)
        if step is None:
            raise ConfigError(
                "model",
                f"{folder}: cannot tell its step (name it step_<n> or give trainer_state.json a step)",
            )
        if step in seen:
            raise ConfigError("model", f"{folder} and {seen[step]} are both step {step}")
        seen[step] = folder
        out.append(Checkpoint(step, folder, str(folder)))
    return sorted(out, key=lambda c: c.step)


def _hub_error(name: str, revision: str, err: Exception) -> ConfigError:
    kind = type(err).__name__
    if kind == "RevisionNotFoundError":
        why = f"revision {revision!r} does not exist for {name}"
    elif kind in ("RepositoryNotFoundError", "GatedRepoError"):
        why = f"{name}: no such model on the Hugging Face hub (or it is private/gated)"
    elif kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or "offline" in str(err).lower():
        why = f"{name}@{revision} is not in the local cache and the hub cannot be reached (HF_HUB_OFFLINE?)"
    else:
        first = " ".join(str(err).split())[:160]
        why = f"{name}@{revision}: cannot be fetched ({kind}: {first})"
    return ConfigError("--revisions", why)


def hub_checkpoints(name: str, revisions: list[str]) -> list[Checkpoint]:
    """One checkpoint per revision; each revision's config and tokenizer files are fetched and
    compared now (so a revision that does not exist, or differs, fails before any work)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    out, seen = [], {}
    for rev in revisions:
        step = _step_of_name(rev)
        if step is None:
            digits = re.findall(r"\d+", rev)
            if not digits:
                raise ConfigError("--revisions", f"cannot read a step from revision {rev!r} (e.g. step1000)")
            step = int(digits[-1])
        if step in seen:
            raise ConfigError("--revisions", f"{rev} and {seen[step]} are both step {step}")
        seen[step] = rev
        try:
            hf_hub_download(name, "config.json", revision=rev)
            folder = Path(snapshot_download(name, revision=rev, allow_patterns=HUB_LIGHT_FILES))
        except Exception as err:  # huggingface_hub's errors: named in the message
            raise _hub_error(name, rev, err) from None
        out.append(Checkpoint(step, folder, f"{name}@{rev}", revision=rev))
    out = sorted(out, key=lambda c: c.step)
    check_series(out, weights=False)  # config and tokenizer of every revision, before any weights
    return out


def fetch_revision(name: str, ckpt: Checkpoint) -> Path:
    """Download (or find in the cache) one revision's model and tokenizer files."""
    from huggingface_hub import snapshot_download

    patterns = [*HUB_LIGHT_FILES, "*.safetensors"]
    try:
        folder = Path(snapshot_download(name, revision=ckpt.revision, allow_patterns=patterns))
        if not any((folder / f).exists() for f in WEIGHT_FILES[:2]):
            folder = Path(
                snapshot_download(name, revision=ckpt.revision, allow_patterns=[*patterns, "*.bin"])
            )
    except Exception as err:
        raise _hub_error(name, ckpt.revision or "", err) from None
    ckpt.path = folder
    return folder


# ---------------------------------------------------------------------- checking checkpoints
def _safetensors_ok(path: Path) -> str | None:
    """None when the file's header parses and its size covers every tensor, else why not."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return "truncated header"
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return f"unreadable safetensors header ({type(err).__name__})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if 8 + n + max(ends, default=0) > size:
        return f"truncated ({size} bytes, the header needs {8 + n + max(ends)})"
    return None


def _weights_identity(folder: Path) -> dict[str, Any]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    ident = {}
    for f in files:
        stat = f.stat()
        with open(f, "rb") as fh:
            head = fh.read(1 << 16)
        ident[f.name] = f"{stat.st_size}:{hashlib.sha1(head).hexdigest()[:16]}"
    return ident


def _tokenizer_signature(folder: Path) -> str | None:
    """A hash of the vocabulary, merges and special tokens (None when the folder has no tokenizer)."""
    tj = folder / "tokenizer.json"
    parts: list[str] = []
    if tj.is_file():
        data = json.loads(tj.read_text())
        parts.append(json.dumps({k: data.get(k) for k in ("model", "added_tokens")}, sort_keys=True))
    else:
        for name in ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt"):
            if (folder / name).is_file():
                parts.append(hashlib.sha1((folder / name).read_bytes()).hexdigest())
    if not parts:
        return None
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        parts.append(
            json.dumps({k: data.get(k) for k in ("bos_token", "eos_token", "add_bos_token")}, sort_keys=True)
        )
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def check_checkpoint(folder: Path, label: str, weights: bool = True) -> dict[str, Any]:
    """Architecture, tokenizer and weights identity of a checkpoint folder; ConfigError naming
    ``label`` when a file is missing, corrupt or unreadable (``weights=False``: config and
    tokenizer only)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConfigError("model", f"checkpoint {label}: no config.json (not a saved Hugging Face model)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            "model", f"checkpoint {label}: corrupt config.json ({type(err).__name__})"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError("model", f"checkpoint {label}: config.json is not a JSON object")
    if weights and not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError("model", f"checkpoint {label}: no weights ({' / '.join(WEIGHT_FILES[::2])})")
    for shard in sorted(folder.glob("*.safetensors")) if weights else ():
        problem = _safetensors_ok(shard)
        if problem:
            raise ConfigError("model", f"checkpoint {label}: corrupt {shard.name} ({problem})")
    try:
        tokenizer = _tokenizer_signature(folder)
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            "model", f"checkpoint {label}: corrupt tokenizer files ({type(err).__name__})"
        ) from None
    if tokenizer is None:
        raise ConfigError("model", f"checkpoint {label}: no tokenizer (save it beside the model)")
    arch = {k: config[k] for k in ARCH_KEYS if k in config}
    return {"arch": arch, "tokenizer": tokenizer, "weights": _weights_identity(folder) if weights else {}}


def same_kind(first: Checkpoint, ckpt: Checkpoint, ident: dict[str, Any]) -> None:
    """ConfigError naming ``ckpt`` when its architecture or tokenizer differs from ``first``'s."""
    a, b = first.identity["arch"], ident["arch"]
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diff:
        k = diff[0]
        raise ConfigError(
            "model",
            f"checkpoint {ckpt.label}: its architecture differs from {first.label}'s "
            f"({k} {b.get(k)!r} vs {a.get(k)!r})",
        )
    if ident["tokenizer"] != first.identity["tokenizer"]:
        raise ConfigError("model", f"checkpoint {ckpt.label}: its tokenizer differs from {first.label}'s")


def check_series(ckpts: list[Checkpoint], weights: bool = True) -> None:
    """Every checkpoint readable and of one architecture and tokenizer (ConfigError naming the odd one)."""
    for ckpt in ckpts:
        assert ckpt.path is not None
        ident = check_checkpoint(ckpt.path, ckpt.label, weights)
        if ckpt is not ckpts[0]:
            same_kind(ckpts[0], ckpt, ident)
        ckpt.identity.update(ident)


def check_attention(bridge: Any, label: str) -> None:
    """ConfigError unless every layer has an ``attn.hook_pattern`` (attention patterns)."""
    n_layers = int(getattr(bridge.cfg, "n_layers", 0) or 0)
    names = set(getattr(bridge, "hook_dict", {}))
    missing = [layer for layer in range(n_layers) if f"blocks.{layer}.attn.hook_pattern" not in names]
    if n_layers == 0 or missing:
        raise ConfigError(
            "model",
            f"checkpoint {label}: the model has no attention patterns (no blocks.L.attn.hook_pattern in "
            f"{'any layer' if n_layers == 0 or len(missing) == n_layers else f'layers {missing}'}); "
            "series scores need attention heads",
        )


def _load_tokenizer(folder: Path, label: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("model", f"checkpoint {label}: its tokenizer did not load ({first})") from None


def _held_out_every(ckpts: list[Checkpoint]) -> int:
    """The train-lm split of a series trained by ``mmicl train-lm`` (its recipe.json), else 10."""
    for ckpt in ckpts[:1]:
        if ckpt.path is not None and (ckpt.path.parent / "recipe.json").is_file():
            try:
                return int(read_json(ckpt.path.parent / "recipe.json")["recipe"]["held_out_every"])
            except (CorruptFileError, KeyError, TypeError, ValueError):
                pass
    return 10
