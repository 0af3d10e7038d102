"""What a model directory holds, read from its ``config.yaml`` and files, not from its name.

Users name directories however they like (a ModelScope download lands under
``iic/<name>``, a copy may be called ``asr``), so the kind comes from the
config's ``model`` entry (the class FunASR trained, which its exports keep
verbatim) and is checked against the files that kind needs.  A directory that
matches no kind, or lacks a file its kind needs, stops the server at start-up
with a message naming the directory, what it looks like and what is missing.

Kinds and what each enables:

======================  =========================  ===========================================
kind                    ``config.yaml`` ``model``  enables
======================  =========================  ===========================================
paraformer              ``Paraformer``             offline recognition (8 kHz too, by ``fs``)
paraformer-timestamp    ``BiCifParaformer``        + word timestamps and ``stamp_sents``
contextual-paraformer   ``ContextualParaformer``   + neural hotwords (``model_eb.onnx``)
seaco-paraformer        ``SeacoParaformer``        + neural hotwords and timestamps
sensevoice-small        ``SenseVoiceSmall``        zh/en/yue/ja/ko, ``svs_lang``/``svs_itn``, tags
paraformer-online       ``ParaformerStreaming``    the online pass (``decoder.onnx``)
fsmn-vad                ``FsmnVAD*``               voice activity detection
ct-transformer          ``CTTransformer``          punctuation of whole texts (jieba: cn-en large)
ct-transformer-realtime ``CTTransformerStreaming`` punctuation carried across 2pass segments
======================  =========================  ===========================================
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .config import load_config
from .model_dir import ModelDirError
from .punctuation import JIEBA_USER_DICT, wants_jieba

log = logging.getLogger(__name__)


class ModelKind(str, Enum):
    PARAFORMER = "paraformer"
    PARAFORMER_TIMESTAMP = "paraformer-timestamp"
    CONTEXTUAL = "contextual-paraformer"
    SEACO = "seaco-paraformer"
    SENSEVOICE = "sensevoice-small"
    ONLINE = "paraformer-online"
    VAD = "fsmn-vad"
    PUNC = "ct-transformer"
    PUNC_REALTIME = "ct-transformer-realtime"


#: What each kind is, in words (for logs and errors).
DESCRIPTIONS: Dict[ModelKind, str] = {
    ModelKind.PARAFORMER: "an offline Paraformer",
    ModelKind.PARAFORMER_TIMESTAMP: "an offline Paraformer with timestamps",
    ModelKind.CONTEXTUAL: "a contextual Paraformer (neural hotwords)",
    ModelKind.SEACO: "a SeACo Paraformer (neural hotwords, timestamps)",
    ModelKind.SENSEVOICE: "SenseVoiceSmall",
    ModelKind.ONLINE: "a streaming (online) Paraformer",
    ModelKind.VAD: "an FSMN VAD",
    ModelKind.PUNC: "an offline CT-Transformer punctuation model",
    ModelKind.PUNC_REALTIME: "a realtime (vad_realtime) CT-Transformer punctuation model",
}

#: config.yaml ``model`` → kind.
_BY_CONFIG: Dict[str, ModelKind] = {
    "Paraformer": ModelKind.PARAFORMER,
    "BiCifParaformer": ModelKind.PARAFORMER_TIMESTAMP,
    "ContextualParaformer": ModelKind.CONTEXTUAL,
    "NeatContextualParaformer": ModelKind.CONTEXTUAL,
    "SeacoParaformer": ModelKind.SEACO,
    "SenseVoiceSmall": ModelKind.SENSEVOICE,
    "ParaformerStreaming": ModelKind.ONLINE,
    "ParaformerOnline": ModelKind.ONLINE,
    "FsmnVADStreaming": ModelKind.VAD,
    "FsmnVAD": ModelKind.VAD,
    "CTTransformer": ModelKind.PUNC,
    "CTTransformerStreaming": ModelKind.PUNC_REALTIME,
}

#: Files (besides the ONNX graph) each kind cannot work without, with what they are for.
_NEEDS: Dict[ModelKind, Tuple[Tuple[str, str], ...]] = {
    ModelKind.PARAFORMER: (("tokens.json", "the vocabulary"), ("am.mvn", "the feature normalisation")),
    ModelKind.PARAFORMER_TIMESTAMP: (("tokens.json", "the vocabulary"), ("am.mvn", "the feature normalisation")),
    ModelKind.CONTEXTUAL: (("tokens.json", "the vocabulary"), ("am.mvn", "the feature normalisation")),
    ModelKind.SEACO: (("tokens.json", "the vocabulary"), ("am.mvn", "the feature normalisation")),
    ModelKind.SENSEVOICE: (("tokens.json", "the vocabulary"), ("am.mvn", "the feature normalisation")),
    ModelKind.ONLINE: (("tokens.json", "the vocabulary"), ("am.mvn", "the feature normalisation")),
    ModelKind.VAD: (("am.mvn", "the feature normalisation"),),
    ModelKind.PUNC: (("tokens.json", "the vocabulary"),),
    ModelKind.PUNC_REALTIME: (("tokens.json", "the vocabulary"),),
}

#: ONNX graphs each kind needs: (stem, what it is); ``stem.onnx`` or ``stem_quant.onnx`` will do.
_GRAPHS: Dict[ModelKind, Tuple[Tuple[str, str], ...]] = {
    ModelKind.CONTEXTUAL: (("model", "the recogniser"), ("model_eb", "the hotword embedding model")),
    ModelKind.SEACO: (("model", "the recogniser"), ("model_eb", "the hotword embedding model")),
    ModelKind.ONLINE: (("model", "the streaming encoder"), ("decoder", "the streaming decoder")),
}


class Role(str, Enum):
    """The part a model plays in a recogniser (the server gives each role its own option)."""

    OFFLINE = "offline"  # the offline recogniser
    ONLINE = "online"  # the streaming (online) recogniser of the 2pass profile
    VAD = "vad"
    PUNC = "punc"


#: Which kinds can play each role.
ROLES: Dict[Role, Tuple[ModelKind, ...]] = {
    Role.OFFLINE: (
        ModelKind.PARAFORMER,
        ModelKind.PARAFORMER_TIMESTAMP,
        ModelKind.CONTEXTUAL,
        ModelKind.SEACO,
        ModelKind.SENSEVOICE,
    ),
    Role.ONLINE: (ModelKind.ONLINE,),
    Role.VAD: (ModelKind.VAD,),
    Role.PUNC: (ModelKind.PUNC, ModelKind.PUNC_REALTIME),
}


def role_of(kind: ModelKind) -> Optional[Role]:
    """The role a model of ``kind`` plays (each kind plays exactly one)."""
    return next((role for role, kinds in ROLES.items() if kind in kinds), None)


def describe_role(role: Role) -> str:
    """What a model for ``role`` is, in words (for errors)."""
    wanted = ROLES[role]
    if len(wanted) <= 2:
        return " or ".join(DESCRIPTIONS[k] for k in wanted)
    return "an offline recogniser (Paraformer, contextual/SeACo Paraformer or SenseVoiceSmall)"


@dataclass(frozen=True)
class DetectedModel:
    """A model directory, identified."""

    kind: ModelKind
    model_dir: Path
    sample_rate: Optional[int] = None  # frontend_conf.fs, for models that take audio
    #: Language of the vocabulary when the config says (``en-bpe`` for English Paraformers).
    language: str = ""
    #: Extra abilities found: ``timestamps``, ``hotwords``, ``jieba``.
    features: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def description(self) -> str:
        words = DESCRIPTIONS[self.kind]
        if self.kind is ModelKind.PUNC and "jieba" in self.features:
            words += " with jieba word segmentation (cn-en large)"
        if self.sample_rate and self.sample_rate != 16000:
            words += f" for {self.sample_rate // 1000 if self.sample_rate % 1000 == 0 else self.sample_rate / 1000} kHz audio"
        return words


def _has_graph(model_dir: Path, stem: str) -> bool:
    return (model_dir / f"{stem}.onnx").is_file() or (model_dir / f"{stem}_quant.onnx").is_file()


def _kind_from_files(model_dir: Path) -> Optional[ModelKind]:
    """A guess for directories whose config names no class we know (e.g. a renamed class)."""
    if _has_graph(model_dir, "decoder"):
        return ModelKind.ONLINE
    if _has_graph(model_dir, "model_eb"):
        return ModelKind.CONTEXTUAL
    if any(model_dir.glob("*spectok*.bpe.model")):
        return ModelKind.SENSEVOICE
    if (model_dir / JIEBA_USER_DICT).is_file():
        return ModelKind.PUNC
    return None


def _sample_rate(config: Dict[str, Any]) -> Optional[int]:
    conf = config.get("frontend_conf") or {}
    fs = conf.get("fs", 16000) if isinstance(conf, dict) else 16000
    try:
        return int(fs)
    except (TypeError, ValueError):
        return None


def detect_model(model_dir: Path) -> DetectedModel:
    """Identify ``model_dir`` and check that its kind's files are there (raises :class:`ModelDirError`)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist")
    if not (model_dir / "config.yaml").is_file():
        raise ModelDirError(
            f"model directory {model_dir} has no config.yaml: not a FunASR ONNX export "
            "(the directory should hold config.yaml, model.onnx or model_quant.onnx, and the model's other files)"
        )
    try:
        config = load_config(model_dir)
    except Exception as exc:  # yaml errors, a non-mapping top level
        raise ModelDirError(f"model directory {model_dir}: config.yaml cannot be read ({exc})") from None
    name = str(config.get("model") or "")
    kind = _BY_CONFIG.get(name)
    if kind is None and name.startswith("FsmnVAD"):
        kind = ModelKind.VAD
    if kind is None:
        kind = _kind_from_files(model_dir)
        if kind is None:
            known = ", ".join(sorted(_BY_CONFIG))
            raise ModelDirError(
                f"model directory {model_dir}: config.yaml names model {name or '(none)'!r}, which this server "
                f"does not know (known: {known}), and its files match no supported kind"
            )
        log.warning("%s: config.yaml names model %r; treating it as %s from its files", model_dir, name, DESCRIPTIONS[kind])
    missing: List[str] = []
    for filename, purpose in _NEEDS[kind]:
        if not (model_dir / filename).is_file():
            missing.append(f"{filename} ({purpose})")
    for stem, purpose in _GRAPHS.get(kind, (("model", "the model"),)):
        if not _has_graph(model_dir, stem):
            missing.append(f"{stem}.onnx or {stem}_quant.onnx ({purpose})")
    if missing:
        raise ModelDirError(
            f"model directory {model_dir} looks like {DESCRIPTIONS[kind]} (config.yaml: model {name!r}) "
            f"but is missing {', '.join(missing)}"
        )
    features: List[str] = []
    if kind in (ModelKind.PARAFORMER_TIMESTAMP, ModelKind.SEACO):
        features.append("timestamps")
    if kind in (ModelKind.CONTEXTUAL, ModelKind.SEACO):
        features.append("hotwords")
    if kind is ModelKind.PUNC and wants_jieba(model_dir, config):
        features.append("jieba")
    takes_audio = kind not in (ModelKind.PUNC, ModelKind.PUNC_REALTIME)
    return DetectedModel(
        kind=kind,
        model_dir=model_dir,
        sample_rate=_sample_rate(config) if takes_audio else None,
        language=str(config.get("lang") or ""),
        features=tuple(features),
    )


__all__ = ["DESCRIPTIONS", "DetectedModel", "ModelKind", "ROLES", "Role", "describe_role", "detect_model", "role_of"]
