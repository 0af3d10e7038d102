"""Finding a model directory for the server: a local path, or a ModelScope id downloaded on first use.

The reference accepts either form for every ``--*-dir`` flag; ids look like
``damo/speech_...`` or ``iic/speech_...``.  Downloads go through ``modelscope``
into ``--download-model-dir`` and are reused on the next start.  The models
themselves (:mod:`models`) only ever see local directories.
"""
from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import Iterable, Optional

from funasr_wss.models.itn import FST_FILES
from funasr_wss.models.model_dir import ModelDirError

log = logging.getLogger(__name__)

_MODEL_ID = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def looks_like_model_id(spec: str) -> bool:
    """True for ``owner/name`` strings that are not an existing local path."""
    return bool(_MODEL_ID.match(spec)) and not Path(spec).exists()


def resolve_model_dir(
    spec: str,
    download_dir: Optional[Path] = None,
    revision: Optional[str] = None,
    required: Iterable[str] = (),
    flag: Optional[str] = None,
    revision_is_default: bool = False,
) -> Path:
    """Return a local directory for ``spec`` and check that ``required`` files exist in it.

    A local path is used as is.  An ``owner/name`` id is fetched with
    ``modelscope.snapshot_download`` (cached, so the second start is offline-safe).
    ``flag`` is the option that named it (``--lm-dir``), for the advice in errors.
    ``revision_is_default``: ``revision`` is only a default (``--lm-revision v1.0.2``), so an
    earlier download is reused without asking the hub, as when no revision is given.
    """
    spec = str(spec).strip()
    if not spec:
        raise ModelDirError("empty model directory")
    path = Path(spec).expanduser()
    if path.is_dir():
        model_dir = path
    elif looks_like_model_id(spec):
        model_dir = _download(spec, download_dir, revision, flag, revision_is_default)
    else:
        raise ModelDirError(
            f"model directory {spec!r} does not exist and is not a ModelScope id (owner/name)"
        )
    missing = [name for name in required if not (model_dir / name).is_file()]
    if missing:
        raise ModelDirError(f"model directory {model_dir} is missing {', '.join(missing)}")
    return model_dir


#: ModelScope renamed the ``damo`` organisation ``iic``; FunASR's guides use both for the same models.
_OWNER_ALIASES = {"damo": "iic", "iic": "damo"}


#: What FunASR's ITN directory (``thuduj12/fst_itn_zh``, for ``--itn-dir``) holds: two FSTs, no config.yaml.
ITN_FILES = FST_FILES


def _is_complete_download(candidate: Path) -> bool:
    """An ONNX model (config.yaml and a graph), an n-gram LM directory (TLG.fst and config.yaml) or an ITN
    grammar (its two FSTs)."""
    if all((candidate / name).is_file() for name in ITN_FILES):
        return True
    if not (candidate / "config.yaml").is_file():
        return False
    return (candidate / "TLG.fst").is_file() or any(candidate.glob("*.onnx"))


def _cached_copy(model_id: str, download_dir: Optional[Path]) -> Optional[Path]:
    """A complete earlier download, so a restart needs no network."""
    if download_dir is None:
        return None
    owner, name = model_id.split("/", 1)
    owners = [owner] + ([_OWNER_ALIASES[owner.lower()]] if owner.lower() in _OWNER_ALIASES else [])
    for who in owners:
        for candidate in (Path(download_dir) / who / name, Path(download_dir) / who / name.replace(".", "___")):
            if _is_complete_download(candidate):
                return candidate
    return None


def _advice(flag: Optional[str]) -> str:
    if flag == "--model-dir":
        return "pass its local directory instead (--model-dir /path/to/model, likewise --vad-dir and --punc-dir)"
    if flag:
        return f"pass its local directory instead ({flag} /path/to/dir)"
    return "pass its local directory instead (for example --model-dir /path/to/model, likewise --vad-dir and --punc-dir)"


def _hub_reachable(timeout: float = 5.0) -> bool:
    """A quick TCP probe, so an offline machine fails in seconds rather than after long retries."""
    host = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn").split("://")[-1].split("/")[0]
    port = 443
    if ":" in host:
        host, port_text = host.rsplit(":", 1)
        port = int(port_text) if port_text.isdigit() else 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download(model_id: str, download_dir: Optional[Path], revision: Optional[str], flag: Optional[str] = None,
              revision_is_default: bool = False) -> Path:
    cached = _cached_copy(model_id, download_dir)
    if cached is not None and (not revision or revision_is_default):
        log.info("using the earlier download of %s in %s", model_id, cached)
        return cached
    if not _hub_reachable():
        if cached is not None:
            # as the reference: a failed download is only logged, and the directory already there is used
            log.warning("ModelScope is unreachable, so revision %s of %s cannot be checked; using the earlier "
                        "download in %s", revision, model_id, cached)
            return cached
        raise ModelDirError(
            f"cannot download {model_id}: ModelScope is unreachable from this machine. "
            f"Download the model elsewhere and {_advice(flag)}."
        )
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except Exception as exc:  # pragma: no cover - modelscope is a declared dependency
        raise ModelDirError(f"cannot download {model_id}: modelscope is not importable ({exc})") from exc
    kwargs = {}
    if download_dir is not None:
        Path(download_dir).mkdir(parents=True, exist_ok=True)
        kwargs["cache_dir"] = str(download_dir)
    if revision:
        kwargs["revision"] = revision
    log.info("downloading %s from ModelScope%s", model_id, f" (revision {revision})" if revision else "")
    try:
        local = snapshot_download(model_id, **kwargs)
    except Exception as exc:
        if cached is not None:
            log.warning("could not download revision %s of %s (%s: %s); using the earlier download in %s",
                        revision, model_id, type(exc).__name__, exc, cached)
            return cached
        raise ModelDirError(
            f"could not download {model_id} from ModelScope ({type(exc).__name__}: {exc}). "
            f"If this machine cannot reach the hub, download the model elsewhere and {_advice(flag)}."
        ) from exc
    return Path(local)


__all__ = ["ITN_FILES", "ModelDirError", "looks_like_model_id", "resolve_model_dir"]
