"""FunASR ONNX models and the offline recognition pipeline.

Nothing in this package knows about networking: audio goes in, text and times
come out.  Each model is a class wrapping one onnxruntime session; the
frontend, CIF timestamps, token decoding and sentence building are plain
functions so they can be tested (and reused by the streaming code) alone.
"""
