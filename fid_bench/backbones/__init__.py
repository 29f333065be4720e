"""Networks the harness builds from config: the ONNX Runtime encoder, its known files and export.

Import the submodules directly; this package imports nothing heavy, so a job whose features are
all cached never imports torch or onnxruntime.
"""
