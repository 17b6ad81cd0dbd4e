"""The offline toolchain: data -> prune -> heal -> finetune -> export -> quantize -> evaluate.

Only this subpackage may import torch; the runtime never does.
"""
