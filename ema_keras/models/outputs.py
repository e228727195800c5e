"""Reading an EMANet's output: the logits alone, or a dict when it has an auxiliary head."""


def main_logits(outputs):
    """The segmentation logits of an EMANet output (`outputs["logits"]` with an aux head)."""
    return outputs["logits"] if isinstance(outputs, dict) else outputs
