"""Training a small qwen35 model with its MTP head (issue 10; development only).

Needs PyTorch (``pip install -e '.[train]'``); nothing else in mtpdec imports this package.
``model``: the qwen35 forward (trunk and MTP block) in torch, parameters named as the
GGUF tensors they become.
"""
