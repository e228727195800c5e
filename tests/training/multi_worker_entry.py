"""One worker of the two-process MultiWorkerMirroredStrategy test.

    python multi_worker_entry.py WORKER_ID PORT0,PORT1 DATA_DIR MODEL_DIR OUTPUT_NPZ
"""

import json
import os
import sys


def main(worker_id, ports, data_dir, model_dir, output):
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"localhost:{port}" for port in ports.split(",")]},
            "task": {"type": "worker", "index": int(worker_id)},
        }
    )
    import numpy as np

    from ema_keras.training import get_recipe, train

    config = get_recipe(
        "demo",
        strategy="multi_worker",
        data_dir=data_dir,
        crop_size=64,
        global_batch_size=4,
        steps=2,
        steps_per_checkpoint=1,
        warmup_steps=0,
        validate=False,
        verbose=0,
    )
    result = train(config, model_dir)
    variables = result.model.weights + result.model.optimizer.variables
    np.savez(output, **{v.path: v.numpy() for v in variables}, step=result.step)


if __name__ == "__main__":
    main(*sys.argv[1:])
