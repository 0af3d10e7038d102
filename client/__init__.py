"""``funasr-wss-client``: a command-line client for FunASR-compatible WebSocket servers.

It speaks FunASR's WebSocket protocol (the one FunASR's
C++ and Python servers speak), so it works against this project's server and
against the reference servers alike.  The package is split by job:

* :mod:`client.config`: the settings a run is made of (dataclasses).
* :mod:`client.hotwords`: the ``--hotword`` file → the string the protocol carries.
* :mod:`client.inputs`: command-line inputs → a list of audio files → PCM.
* :mod:`client.connection`: opening a WebSocket, with errors a person can act on.
* :mod:`client.protocol_flow`: one utterance over one connection → a transcript.
* :mod:`client.batch`: many files over a few reused connections.
* :mod:`client.output`: text, JSON lines and SRT, on stdout and in ``--output_dir``.
* :mod:`client.progress`: the progress line on a terminal.
* :mod:`client.mic`: live microphone streaming (optional ``sounddevice``).
* :mod:`client.cli`: the flags, FunASR's spellings included.

Nothing here imports the server: the client runs against remote servers.
"""
