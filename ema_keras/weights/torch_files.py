"""Reading PyTorch `.pth` files: the only module that imports torch, and only when called."""

import os

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".bin", ".ckpt")
_INSTALL_HINT = (
    "Reading PyTorch files needs torch, which ema-keras only uses for conversion: "
    "`pip install 'ema-keras[convert]'` (or `pip install torch`). Converted files load without it."
)


def is_torch_file(path):
    return str(path).lower().endswith(TORCH_SUFFIXES)


def read_state_dict(path):
    """`{key: float32 numpy array}` from a PyTorch checkpoint or state dict file.

    Accepts the official training checkpoint `{"net": state_dict, "step": n}`,
    a `{"state_dict": ...}` or `{"model": ...}` wrapper, or a bare state dict
    (torchvision's ImageNet files). A `module.` prefix left by DataParallel is
    removed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such PyTorch file: {path}")
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"Cannot read {path}: {_INSTALL_HINT}") from error
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise ValueError(f"Cannot read {path} as a PyTorch checkpoint: {error}") from error
    state_dict = contents
    if isinstance(contents, dict):
        for wrapper in ("net", "state_dict", "model"):
            if isinstance(contents.get(wrapper), dict):
                state_dict = contents[wrapper]
                break
    if not isinstance(state_dict, dict) or not all(
        isinstance(value, torch.Tensor) for value in state_dict.values()
    ):
        raise ValueError(
            f"{path} holds no state dict: expected {{'net': state_dict, 'step': n}} (official "
            "checkpoint) or a dict of tensors."
        )
    arrays = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        value = value.detach()
        arrays[key] = (value.to(torch.float32) if value.is_floating_point() else value).numpy()
    return arrays
