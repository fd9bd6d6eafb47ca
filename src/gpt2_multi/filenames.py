"""Every file name the package reads or writes in a checkpoint directory, in one place.

It imports nothing, so any module may use it without creating an import cycle.
"""

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"

#: the weights file of each checkpoint format (``gpt2-multi convert --to``)
WEIGHTS_NAMES = {
    "safetensors": "model.safetensors",
    "pt-bin": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}
SAFE_INDEX_NAME = "model.safetensors.index.json"
BIN_INDEX_NAME = "pytorch_model.bin.index.json"
