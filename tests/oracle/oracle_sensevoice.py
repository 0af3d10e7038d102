"""Regenerate ``tests/golden/sensevoice.json`` with FunASR's own Python runtime (``funasr-onnx``).

For every fixture clip (loaded with our audio loader at 16 kHz so both sides
see the same samples; only the first 20 s, to keep the suite fast) and a set
of (language, textnorm) requests, the oracle's ``SenseVoiceSmall`` (fp32
model, batch size 1, one thread) gives:

* ``token_ids``: its features (``extract_feat``) through its session
  (``infer``), then the greedy CTC rule of its ``__call__`` (argmax over the
  first ``encoder_out_lens`` frames, repeats merged, blank 0 dropped); the
  script checks that its tokenizer turns these ids into the very string
  ``__call__`` returns, so the ids are the ones behind that string;
* ``text``: the string ``__call__`` returns (tags included, as it decodes them).

    python tests/oracle/oracle_sensevoice.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from funasr_onnx import SenseVoiceSmall  # noqa: E402

from funasr_wss.models.audio import load_audio_file  # noqa: E402
from tests.paths import GOLDEN, SENSEVOICE_DIR, audio_clips  # noqa: E402

#: The requests decoded per clip: every language once, both textnorm values.
REQUESTS = (
    ("auto", "woitn"),
    ("auto", "withitn"),
    ("zh", "withitn"),
    ("en", "woitn"),
    ("yue", "withitn"),
    ("ja", "woitn"),
    ("ko", "withitn"),
    ("nospeech", "withitn"),
)
MAX_SAMPLES = 20 * 16000


def oracle_ids(model: SenseVoiceSmall, waveform: np.ndarray, language: str, textnorm: str) -> list:
    """The oracle's greedy CTC ids for one clip, from its own features and session."""
    feats, feats_len = model.extract_feat([waveform])
    lang, tn = model.read_tags(language, textnorm)
    logits, out_lens = model.infer(feats, feats_len, np.array(lang, dtype=np.int32), np.array(tn, dtype=np.int32))
    best = np.argmax(logits[0, : int(out_lens[0])], axis=-1)
    merged = [int(x) for i, x in enumerate(best) if i == 0 or x != best[i - 1]]
    return [x for x in merged if x != model.blank_id]


def _dump(golden: dict) -> str:
    """JSON with one request per line, so a diff after regenerating stays readable."""
    lines = ["{", f' "max_samples": {golden["max_samples"]},', ' "clips": {']
    names = list(golden["clips"])
    for n, name in enumerate(names):
        lines.append(f"  {json.dumps(name)}: [")
        entries = golden["clips"][name]
        for k, entry in enumerate(entries):
            lines.append("   " + json.dumps(entry, ensure_ascii=False) + ("," if k + 1 < len(entries) else ""))
        lines.append("  ]" + ("," if n + 1 < len(names) else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    model = SenseVoiceSmall(str(SENSEVOICE_DIR), batch_size=1, intra_op_num_threads=1)
    golden = {"max_samples": MAX_SAMPLES, "clips": {}}
    for clip in audio_clips():
        waveform = load_audio_file(clip, 16000)[:MAX_SAMPLES]
        entries = []
        for language, textnorm in REQUESTS:
            ids = oracle_ids(model, waveform, language, textnorm)
            text = model(waveform, language=language, textnorm=textnorm)[0]
            if model.tokenizer.decode(ids) != text:
                raise SystemExit(f"{clip.name} {language}/{textnorm}: ids do not give the oracle's text")
            entries.append({"language": language, "textnorm": textnorm, "token_ids": ids, "text": text})
        golden["clips"][clip.name] = entries
        print(clip.name, [len(e["token_ids"]) for e in entries])
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / "sensevoice.json"
    out.write_text(_dump(golden), encoding="utf-8")
    print("wrote", out)


if __name__ == "__main__":
    main()
