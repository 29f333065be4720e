"""Backbones: one network family per module, each building one network that carries its preprocessing.

A backbone maps an ``N x 3 x H x W`` image batch to ``N x D`` features. The features track
(``fid_bench.features``) freezes it and caches its features; the fine-tuning track
(``fid_bench.finetune``) trains it under a binary head. Both build it from the same ``backbone:``
node of a model YAML, so a new model family is one module here plus one ``conf/model/*.yaml``: the
module also declares where the family's weights come from (``Backbone.weight_source()``).

``base``       the ``Backbone`` contract, ``Preprocessing`` (declared once per built network) and
               helpers shared by the families
``timm``       any timm model (``TimmBackbone``)
``open_clip``  the image tower of an open_clip CLIP model (``OpenClipBackbone``)
``small_cnn``  a compact CNN trained from scratch (``SmallCNN``)
``weights``    pretrained-weight resolution shared by the families (the Hugging Face hub through its
               cache, a local file) and ``WeightSource``, what a family's ``weight_source()`` declares
``weight_sources`` the weight source of a model option, read from its backbone class's declaration
               (``fid-bench weights get`` and the offline check before a job dispatch on nothing else)
``onnx``       any ONNX image encoder run by ONNX Runtime (frozen only; preprocessing in PIL + numpy)
``onnx_files`` the known weight files (name, package to fetch from, pinned sha256, licence) and the fetch
``onnx_graph`` an ONNX file cut at inner tensors (hidden states of a backbone under a head)
``convert``    a packaged file mapped onto a timm network, checked against its source, cached
``packaged``   a timm network with such converted weights (``PackagedTimmBackbone``)
``export``     a torch backbone exported to ONNX, checked against torch before it is written
``layers``     intermediate transformer blocks as features (``model.layers``, ``model.pool``)
``native_crops`` native-resolution windows (``model.resize=native``, ``model.crops``), shared
               by the ONNX and torch encoders

May import ``fid_bench.errors`` and ``fid_bench.data`` only, never features, finetune, features_track,
evaluation or tracking (they sit above). Nothing here imports torch, timm or open_clip at module
import time except ``small_cnn`` (a torch-only family), so a backbone's cache identity is computed
without them; nothing imports onnxruntime until a session is needed.
"""
