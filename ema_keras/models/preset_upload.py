"""Sharing a preset folder on Hugging Face or Kaggle (`save_to_preset` writes one)."""

import os

from ema_keras.models.image_segmenter import EMANetImageSegmenter
from ema_keras.models.preset_files import HUB_EXTRA, check_preset_folder, preset_scheme


def upload_preset(uri, preset_dir):
    """Shares a preset folder: `hf://[org/]name` (Hugging Face) or `kaggle://owner/model/keras/v`.

    The folder is checked first (it must load: an EMANet config, metadata and
    weights). Hugging Face: the repository is created if needed and the
    folder uploaded; Kaggle: `kagglehub.model_upload`. Credentials are the
    clients' own (`huggingface-cli login`, `KAGGLE_USERNAME`/`KAGGLE_KEY`).
    """
    check_preset_folder(preset_dir, EMANetImageSegmenter)
    scheme = preset_scheme(str(uri))
    if scheme == "hf":
        try:
            import huggingface_hub
        except ImportError as error:
            message = f"{uri}: uploading to Hugging Face needs huggingface_hub: {HUB_EXTRA}."
            raise ImportError(message) from error
        repo = huggingface_hub.create_repo(repo_id=uri[len("hf://") :], exist_ok=True)
        huggingface_hub.upload_folder(repo_id=repo.repo_id, folder_path=os.fspath(preset_dir))
    elif scheme == "kaggle":
        try:
            import kagglehub
        except ImportError as error:
            message = f"{uri}: uploading to Kaggle needs kagglehub: {HUB_EXTRA}."
            raise ImportError(message) from error
        kagglehub.model_upload(uri[len("kaggle://") :], os.fspath(preset_dir))
    else:
        raise ValueError(
            f"{uri}: upload to hf://[<org>/]<name> or kaggle://<owner>/<model>/keras/<variant>."
        )
