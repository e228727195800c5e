"""Where EMANet's CPU inference time goes, layer kind by layer kind, Keras against PyTorch.

    python -m bench.inference_profile --quick      # R50 OS16 at 321x321, 1 thread
    python -m bench.inference_profile --preset emanet_resnet101_os8_voc --image_size 513

Every leaf layer of the Keras model is listed with the shapes it sees on one
size x size image; layers of the same kind and shapes (the 23 identical 3x3
dilated convs of stage 3, say) are timed once, on a random input of their
shape, and counted. PyTorch runs the same operation (the reference's
`nn.Conv2d` with its padding inside, `BatchNorm2d`, in-place ReLU, `y +
shortcut`, its EMAU, `interpolate`) on the same shape. A kind's total is
count x time of one call; the sum of the kinds next to the whole model's
time shows what the graph adds or saves (TensorFlow's graph optimiser fuses
Conv2D + BiasAdd + ReLU when BatchNorm is folded away, for instance).

Keras is timed twice, each in a fresh process: with TensorFlow's default
kernels on x86 (oneDNN) and with `TF_ENABLE_ONEDNN_OPTS=0` (Eigen), since the
variable acts only when set before TensorFlow is imported. The whole model is
timed as built, with its BatchNorms folded (`ema_keras.inference.folding`),
folded with Keras' SpaceToBatchND lowering of its dilated convolutions (what
ema-keras ran before `ema_keras.layers.DilatedConv2D`), and folded in
bfloat16. The script also prints the ops a dilated 3x3 conv becomes in the
traced graph: one Conv2D for `DilatedConv2D`, SpaceToBatchND + Conv2D +
BatchToSpaceND for `keras.layers.Conv2D`.
"""

import contextlib
import os

from absl import app, flags

from bench import common, model_inference

FLAGS = flags.FLAGS
KERNELS = {"oneDNN": None, "Eigen": "0"}  # TF_ENABLE_ONEDNN_OPTS per Keras run


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "_nodes_by_depth"):  # a nested functional model
            yield from _leaf_layers(layer)
        elif layer._inbound_nodes and layer._inbound_nodes[0].input_tensors:  # not an Input
            yield layer


def layer_signature(layer):
    """(kind, description, input shapes, torch spec, FLOPs) of one leaf layer, or None."""
    import keras

    from ema_keras.layers.em_attention import EMAUnit

    shapes = [tuple(t.shape[1:]) for t in layer._inbound_nodes[0].input_tensors]
    shape = shapes[0]
    size = "x".join(map(str, shape[:2]))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return ("other", f"DepthwiseConv2D {size}", shapes, None, 0)
    if isinstance(layer, keras.layers.Conv2D):
        (k, _), (s, _), (d, _) = layer.kernel_size, layer.strides, layer.dilation_rate
        out = layer._inbound_nodes[0].output_tensors[0].shape
        flops = 2 * out[1] * out[2] * k * k * shape[-1] * layer.filters
        pad = d * (k - 1) // 2
        # A strided conv is ZeroPadding2D + "valid" here, padding inside the conv in PyTorch.
        inner = shape if layer.padding == "same" else (shape[0] - 2 * pad, shape[1] - 2 * pad)
        where = "dilated " if d > 1 else ("strided " if s > 1 else "")
        name = f"{where}{k}x{k} conv {shape[-1]}->{layer.filters} d{d} s{s} at {size}"
        spec = ("conv", shape[-1], layer.filters, k, s, pad, d, layer.use_bias, inner[:2])
        return (f"{where}{k}x{k} conv", name, shapes, spec, flops)
    kinds = (
        (keras.layers.BatchNormalization, "BatchNorm", ("batch_norm", shape[-1])),
        (keras.layers.ReLU, "ReLU", ("relu",)),
        (keras.layers.Add, "residual add", ("add",)),
        (keras.layers.ZeroPadding2D, "zero padding", None),
        (keras.layers.MaxPooling2D, "max pool", ("max_pool",)),
        (EMAUnit, "EMA unit", ("ema_unit", shape[-1], getattr(layer, "num_bases", 64))),
    )
    for kind, label, spec in kinds:
        if isinstance(layer, kind):
            return (label, f"{label} {size}x{shape[-1]}", shapes, spec, 0)
    name = type(layer).__name__
    if name == "BilinearResize":
        return ("resize", f"resize {size}x{shape[-1]}", shapes, ("resize", shapes[1][:2]), 0)
    return ("other", f"{name} {size}x{shape[-1]}", shapes, None, 0)


def census(model):
    """[(kind, name, input shapes, torch spec, FLOPs, count, a layer)] of `model`'s leaf layers."""
    rows = {}
    for layer in _leaf_layers(model):
        kind, name, shapes, spec, flops = layer_signature(layer)
        key = (name, tuple(shapes))
        if key in rows:
            rows[key][5] += 1
        else:
            rows[key] = [kind, name, shapes, spec, flops, 1, layer]
    return list(rows.values())


def dilated_conv_ops():
    """{layer: op types} TensorFlow traces for a 3x3 conv at dilation 2 ("same", NHWC), inference.

    `keras.layers.Conv2D` goes through `tf.nn.convolution` (SpaceToBatchND +
    Conv2D + BatchToSpaceND); ema-keras' `DilatedConv2D` is one Conv2D op where
    TensorFlow has that op's gradient (oneDNN), the same lowering elsewhere.
    """
    import keras
    import tensorflow as tf

    from ema_keras.layers import DilatedConv2D

    wanted = {"Conv2D", "SpaceToBatchND", "BatchToSpaceND"}
    traced = {}
    for layer_class in (keras.layers.Conv2D, DilatedConv2D):
        conv = layer_class(8, 3, padding="same", dilation_rate=2, use_bias=False)
        call = tf.function(lambda v, c=conv: c(v, training=False))
        graph = call.get_concrete_function(tf.TensorSpec((1, 33, 33, 8))).graph
        traced[layer_class.__name__] = sorted(
            {op.type for op in graph.get_operations() if op.type in wanted}
        )
    return traced


@contextlib.contextmanager
def keras_dilation_lowering():
    """Inside: `DilatedConv2D` traces Keras' own lowering (SpaceToBatchND), as before it existed.

    To measure what the one-op dilated convolution gives the whole model.
    """
    from ema_keras.layers import DilatedConv2D

    original = DilatedConv2D._runs_native_dilation
    DilatedConv2D._runs_native_dilation = lambda self: False
    try:
        yield
    finally:
        DilatedConv2D._runs_native_dilation = original


def keras_profile(preset, *, size, repeats, threads, onednn):
    """Per-layer-kind Keras timings and the whole model's, in this (fresh) process."""
    if onednn is not None:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = onednn
    common.set_threads(threads)
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per layer shape is the point here
    from ema_keras.inference.folding import fold_batch_norm
    from ema_keras.models import build_preset

    keras.utils.set_random_seed(0)
    model = build_preset(preset, image_shape=(size, size, 3), seed=0)
    rows, seconds = census(model), {}
    for kind, name, shapes, _, _, _, layer in rows:
        copy = type(layer).from_config(layer.get_config())
        xs = [tf.random.stateless_normal((1, *s), seed=(0, i)) for i, s in enumerate(shapes)]
        call = tf.function(lambda *v, c=copy: c(list(v) if len(v) > 1 else v[0]))
        seconds[name, tuple(shapes)] = common.time_calls(
            lambda c=call, v=xs: c(*v).numpy(), repeats=repeats
        ).best
    image = tf.random.stateless_normal((1, size, size, 3), seed=(1, 1))
    whole, folded = {}, fold_batch_norm(model)
    bfloat16, plain = fold_batch_norm(model, dtype="mixed_bfloat16"), contextlib.nullcontext
    for label, built, context in (
        ("as built", model, plain),
        ("BatchNorm folded", folded, plain),
        ("folded, Keras' SpaceToBatchND dilated convs", folded, keras_dilation_lowering),
        ("folded, bfloat16", bfloat16, plain),
    ):
        graph = tf.function(lambda v, m=built: m(v, training=False))
        with context():  # traced by the warm-up call, inside the context
            whole[label] = common.time_calls(lambda g=graph: g(image).numpy(), repeats=repeats).best
    table = [row[:6] for row in rows]
    return {"rows": table, "seconds": seconds, "whole": whole, "dilated_ops": dilated_conv_ops()}


def torch_profile(rows, *, size, repeats, threads, preset):
    """The same operations in PyTorch, and the reference model's whole time, in this process."""
    common.set_threads(threads, frameworks=("torch",))
    import torch
    import torch.nn.functional as F

    from bench.torch_reference.emanet_torch import EMAU
    from bench.torch_reference.emanet_torch import EMANet as TorchEMANet

    torch.manual_seed(0)
    seconds = {}
    with torch.inference_mode():
        for _, name, shapes, spec, _, _ in rows:
            if spec is None:
                continue
            nchw = [torch.randn(1, s[-1], *s[:2]) for s in shapes]
            op = spec[0]
            if op == "conv":
                cin, cout, k, stride, pad, dilation, bias, inner = spec[1:]
                module = torch.nn.Conv2d(cin, cout, k, stride, pad, dilation, bias=bias).eval()
                nchw = [torch.randn(1, cin, *inner)]
                fn = lambda m=module, x=nchw[0]: m(x)  # noqa: E731
            elif op == "batch_norm":
                module = torch.nn.BatchNorm2d(spec[1]).eval()
                fn = lambda m=module, x=nchw[0]: m(x)  # noqa: E731
            elif op == "relu":
                fn = lambda x=nchw[0]: F.relu_(x)  # noqa: E731  (the reference's inplace ReLU)
            elif op == "add":
                fn = lambda a=nchw[0], b=nchw[1]: a + b  # noqa: E731
            elif op == "max_pool":
                fn = lambda x=nchw[0]: F.max_pool2d(x, 3, 2, 1)  # noqa: E731
            elif op == "ema_unit":
                module = EMAU(spec[1], spec[2]).eval()
                fn = lambda m=module, x=nchw[0]: m(x)  # noqa: E731
            else:  # resize to the image
                fn = lambda x=nchw[0], s=spec[1]: F.interpolate(  # noqa: E731
                    x, size=tuple(s), mode="bilinear", align_corners=True
                )
            seconds[name, tuple(shapes)] = common.time_calls(fn, repeats=repeats).best
        depth, output_stride, num_classes = model_inference.preset_architecture(preset)
        net = TorchEMANet(num_classes=num_classes, depth=depth, output_stride=output_stride).eval()
        image = torch.randn(1, 3, size, size)
        whole = common.time_calls(lambda: net(image), repeats=repeats).best
    return {"seconds": seconds, "whole": whole}


def define_flags():
    """Command-line flags (defined only when run as a script)."""
    flags.DEFINE_bool("quick", False, "emanet_resnet50_os16 at 321x321.")
    flags.DEFINE_string("preset", None, "EMANet preset (default emanet_resnet101_os8_voc).")
    flags.DEFINE_integer("image_size", None, "Square input size (default 513; 321 with --quick).")
    flags.DEFINE_integer("repeats", 3, "Timed calls per layer and model (after one warm-up).")
    flags.DEFINE_integer("threads", 1, "CPU threads of every framework.")
    flags.DEFINE_integer("top", 15, "Layer shapes listed one by one (the slowest in Keras).")


def _ms(seconds):
    return common.fmt(None if seconds is None else 1000 * seconds, 1)


def print_profile(keras_runs, torch_run):
    """The kind table, the slowest shapes, and the whole models."""
    first = next(iter(keras_runs.values()))
    kinds, names = {}, list(keras_runs)
    for kind, name, shapes, spec, flops, count in first["rows"]:
        key = (name, tuple(shapes))
        entry = kinds.setdefault(kind, {"count": 0, "flops": 0, "torch": 0.0})
        entry["count"] += count
        entry["flops"] += flops * count
        for label, run in keras_runs.items():
            entry[label] = entry.get(label, 0.0) + count * run["seconds"][key]
        torch_seconds = torch_run["seconds"].get(key)
        entry["torch"] += count * (torch_seconds or 0.0)
    rows = []
    for kind, entry in sorted(kinds.items(), key=lambda item: -item[1][names[0]]):

        def rate(seconds, flops=entry["flops"]):
            return common.fmt(flops / seconds / 1e9 if flops and seconds else None, 0)

        rows.append(
            [kind, entry["count"]]
            + [_ms(entry[label]) for label in names]
            + [_ms(entry["torch"]), rate(entry[names[0]]), rate(entry["torch"])]
        )
    totals = [sum(entry[label] for entry in kinds.values()) for label in names]
    rows.append(
        ["**sum of the layers**", sum(e["count"] for e in kinds.values())]
        + [_ms(total) for total in totals]
        + [_ms(sum(e["torch"] for e in kinds.values())), "", ""]
    )
    headers = ["layer kind", "layers"] + [f"Keras {label} ms" for label in names]
    print(common.markdown_table(headers + ["PyTorch ms", "Keras GFLOP/s", "PyTorch GFLOP/s"], rows))
    slowest = sorted(
        first["rows"], key=lambda r: -r[5] * first["seconds"][r[1], tuple(r[2])]
    )[: FLAGS.top]
    print(f"\nthe {len(slowest)} slowest layer shapes in Keras ({names[0]}), per call:\n")
    rows = []
    for _, name, shapes, _, _, count in slowest:
        key = (name, tuple(shapes))
        torch_seconds = torch_run["seconds"].get(key)
        rows.append(
            [name, count]
            + [_ms(run["seconds"][key]) for run in keras_runs.values()]
            + [_ms(torch_seconds)]
        )
    print(common.markdown_table(["layer", "count"] + headers[2:] + ["PyTorch ms"], rows))
    print("\nthe whole model (ms per image):\n")
    rows = [[f"Keras {label}, {variant}", _ms(seconds)] for label, run in keras_runs.items()
            for variant, seconds in run["whole"].items()]
    rows.append(["PyTorch reference (float32)", _ms(torch_run["whole"])])
    print(common.markdown_table(["runtime", "ms"], rows))
    for layer_name, op_types in first["dilated_ops"].items():
        print(f"- a dilated 3x3 {layer_name} traces to: {', '.join(op_types)}")


def main(argv):
    del argv
    common.quiet_logs()
    preset = FLAGS.preset or ("emanet_resnet50_os16" if FLAGS.quick else "emanet_resnet101_os8_voc")
    size = FLAGS.image_size or (321 if FLAGS.quick else 513)
    settings = dict(size=size, repeats=FLAGS.repeats, threads=FLAGS.threads)
    print(common.header("EMANet inference profile", {"preset": preset, **settings}))
    keras_runs = {}
    for label, onednn in KERNELS.items():
        keras_runs[label] = common.run_isolated(keras_profile, preset, onednn=onednn, **settings)
        print(f"  Keras ({label}) timed", flush=True)
    rows = next(iter(keras_runs.values()))["rows"]
    torch_run = common.run_isolated(torch_profile, rows, preset=preset, **settings)
    print_profile(keras_runs, torch_run)


if __name__ == "__main__":
    define_flags()
    app.run(main)
