"""Chinese inverse text normalisation (``二零二四年`` → ``2024年``) through WeTextProcessing.

WeTextProcessing ships the compiled grammar (the same FSTs as FunASR's
``fst_itn_zh``), so loading takes milliseconds.  ``--itn-dir`` may name a
directory holding ``zh_itn_tagger.fst`` and ``zh_itn_verbalizer.fst`` built
elsewhere.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

FST_FILES = ("zh_itn_tagger.fst", "zh_itn_verbalizer.fst")


class ItnError(RuntimeError):
    pass


class ChineseItn:
    """Callable text → normalised text.  Thread-safe (pynini objects are guarded by a lock)."""

    def __init__(self, fst_dir: Optional[Path] = None):
        try:
            from itn.chinese.inverse_normalizer import InverseNormalizer
        except Exception as exc:
            raise ItnError(f"WeTextProcessing is not importable: {exc}") from exc
        kwargs = {}
        if fst_dir is not None:
            fst_dir = Path(fst_dir)
            missing = [n for n in FST_FILES if not (fst_dir / n).is_file()]
            if missing:
                raise ItnError(f"ITN directory {fst_dir} is missing {', '.join(missing)}")
            kwargs["cache_dir"] = str(fst_dir)
        logging.getLogger("wetext").setLevel(logging.WARNING)  # it logs every start at INFO
        self._normalizer = InverseNormalizer(**kwargs)
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            return self._normalizer.normalize(text)
