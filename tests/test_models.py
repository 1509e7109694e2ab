"""bayes_larq.models: architectures, binarization scopes, LCE conversion, registry.

Expected numbers come from the architecture definitions (hand-derived below) or are the
well-known figures of the reference networks, never from running the builders.
"""

import bayes_larq  # noqa: F401  (sets up tf_keras before tf.keras is touched)

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bayes_larq import convert, models, profile
from bayes_larq.quantizers import BayesianSign, bayesian_kernels

# --- hand-derived architecture facts --------------------------------------------------

RESNET18_IMAGENET_PARAMS = 11_689_512  # torchvision resnet18, 1000 classes
RESNET18_CIFAR_PARAMS = 11_173_962  # the usual CIFAR ResNet-18 (3x3 stem), 10 classes
RESNET18_IMAGENET_MACS = 1_814_073_344  # the well-known 1.81 G MACs at 224x224
# Larq Zoo's BiRealNet docs: 11 699 112 parameters, BatchNorm moving statistics included
LARQ_ZOO_BIREALNET_PARAMS = 11_699_112


def conv_macs(out_size, kernel, c_in, c_out):
    """MACs of a square conv: output pixels x kernel area x input x output channels."""
    return out_size * out_size * kernel * kernel * c_in * c_out


def resnet18_binary_kernels():
    """(kernel weights, output channels) of the 16 binary 3x3 convs of ResNet-18."""
    kernels = []
    for c_in, c_out in ((64, 64), (64, 128), (128, 256), (256, 512)):
        kernels.append((9 * c_in * c_out, c_out))  # first conv of the stage
        kernels += [(9 * c_out * c_out, c_out)] * 3  # the other three
    return kernels


def resnet18_macs(stem_macs, stage1_size, classes):
    """(binary 3x3, 1x1 shortcut, stem, classifier) MACs of ResNet-18."""
    binary, shortcut, size = 0, 0, stage1_size
    for stage, (c_in, c_out) in enumerate(((64, 64), (64, 128), (128, 256), (256, 512))):
        if stage:
            size //= 2
            shortcut += conv_macs(size, 1, c_in, c_out)
        binary += conv_macs(size, 3, c_in, c_out) + 3 * conv_macs(size, 3, c_out, c_out)
    return binary, shortcut, stem_macs, 512 * classes


def wrn22_macs(k, classes=10):
    binary, shortcut = 0, 0
    for group, (size, c_in, c_out) in enumerate(
            ((32, 16 * k, 16 * k), (16, 16 * k, 32 * k), (8, 32 * k, 64 * k))):
        if group:
            shortcut += conv_macs(size, 1, c_in, c_out)
        binary += conv_macs(size, 3, c_in, c_out) + 5 * conv_macs(size, 3, c_out, c_out)
    return binary, shortcut, conv_macs(32, 3, 3, 16 * k), 64 * k * classes


def small_cnn_macs():
    # stem 3x3 conv 1->32 at 28x28, max-pool to 14x14; units: 32->64 /2 (7x7),
    # 64->64 (7x7), 64->128 /2 (4x4), 128->128 (4x4); shortcuts 1x1 32->64 at 7x7 and
    # 64->128 at 4x4; classifier 128->10
    binary = (conv_macs(7, 3, 32, 64) + conv_macs(7, 3, 64, 64)
              + conv_macs(4, 3, 64, 128) + conv_macs(4, 3, 128, 128))
    shortcut = conv_macs(7, 1, 32, 64) + conv_macs(4, 1, 64, 128)
    return binary, shortcut, conv_macs(28, 3, 1, 32), 128 * 10


# name -> (native input, kwargs, binary 3x3 convs, 1x1 downsampling shortcuts, MACs)
ARCHITECTURES = {
    "small_cnn": ((28, 28, 1), {}, 4, 2, small_cnn_macs()),
    "resnet18": ((224, 224, 3), {}, 16, 3,
                 resnet18_macs(conv_macs(112, 7, 3, 64), 56, 1000)),
    "resnet18_cifar": ((32, 32, 3), {}, 16, 3,
                       resnet18_macs(conv_macs(32, 3, 3, 64), 32, 10)),
    "wrn22": ((32, 32, 3), {"width_factor": 4}, 18, 2, wrn22_macs(4)),
}
DEFAULT_CLASSES = {"small_cnn": 10, "resnet18": 1000, "resnet18_cifar": 10, "wrn22": 10}


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


# --- registry and arguments -------------------------------------------------------------

def test_registry_names():
    assert models.names() == ["resnet18", "resnet18_cifar", "small_cnn", "wrn22"]
    assert models.DEFAULT == "small_cnn"
    assert models.builder("wrn22") is models.wrn22


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "resnet50"}, "resnet18, resnet18_cifar, small_cnn, wrn22"),
    ({"name": "small_cnn", "scope": "all"}, "paper.*full"),
    ({"name": "small_cnn", "precision": "int8"}, "binary.*float"),
    ({"name": "wrn22", "width_factor": 0}, "width_factor.*>= 1"),
    ({"name": "wrn22", "width_factor": 0.5}, "width_factor.*>= 1"),
    ({"name": "wrn22", "width_factor": 2.5}, "width_factor.*integer"),
    ({"name": "small_cnn", "input_shape": (28, 28)}, r"\(height, width, channels\)"),
    ({"name": "small_cnn", "input_shape": (1, 28, 28, 1)}, r"\(height, width, channels\)"),
    ({"name": "resnet18", "input_shape": (224, 224, 0)}, "positive integers"),
    ({"name": "small_cnn", "num_classes": 0}, "num_classes"),
    ({"name": "small_cnn", "precision": "float"}, "bonn=False"),
    ({"name": "small_cnn", "float_activation": "relu"}, "precision='float'"),
    ({"name": "small_cnn", "precision": "float", "bonn": False,
      "float_activation": "gelu"}, "relu.*htanh.*linear"),
    ({"name": "small_cnn", "reduction": "max"}, "mean.*sum"),
    ({"name": "small_cnn", "scale": "pixel"}, "layer.*channel"),
    ({"name": "small_cnn", "kernel_scale": "layer"},
     r"Unknown BayesianSign settings \[.kernel_scale.\]"),
    ({"name": "small_cnn", "lam": -1.0}, "lam"),
    ({"name": "small_cnn", "bonn": "yes"}, "True or False"),
])
def test_bad_arguments_raise_value_error_naming_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get(**kwargs)


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        models.register("small_cnn", models.small_cnn)


def test_builders_are_deterministic_under_keras_seed():
    weights = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(7)
        weights.append(models.get("small_cnn").get_weights())
    assert len(weights[0]) == len(weights[1])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# --- parameter counts -------------------------------------------------------------------

def test_float_resnet18_imagenet_has_the_well_known_parameter_count():
    model = models.get("resnet18", precision="float", bonn=False)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    assert trainable_count(model) == RESNET18_IMAGENET_PARAMS
    # and its MACs are the well-known 1.81 G
    assert profile.mac_counts(model)["total"] == RESNET18_IMAGENET_MACS
    assert sum(ARCHITECTURES["resnet18"][4]) == RESNET18_IMAGENET_MACS


def test_binary_resnet18_imagenet_parameters_differ_only_where_the_architecture_says():
    larq_paper = models.get("resnet18", bonn=False)
    assert trainable_count(larq_paper) == RESNET18_IMAGENET_PARAMS  # same latent weights
    assert larq_paper.count_params() == LARQ_ZOO_BIREALNET_PARAMS
    larq_full = models.get("resnet18", bonn=False, scope="full")
    assert trainable_count(larq_full) == RESNET18_IMAGENET_PARAMS - 1000  # no logits bias
    # BONN adds, per binary kernel, W (the kernel's shape) and mu+, mu-, log sigma+,
    # log sigma- (one per output channel), trainable, and lam, nu, not trainable
    bonn_paper = models.get("resnet18", bonn=True)
    kernels = resnet18_binary_kernels()
    assert len(kernels) == 16
    extra = sum(size + 4 * channels for size, channels in kernels)
    assert extra == 10_985_472 + 15_360
    assert trainable_count(bonn_paper) == RESNET18_IMAGENET_PARAMS + extra
    non_trainable = int(sum(np.prod(w.shape) for w in bonn_paper.non_trainable_weights))
    larq_non_trainable = int(sum(np.prod(w.shape) for w in larq_paper.non_trainable_weights))
    assert non_trainable == larq_non_trainable + 2 * 16
    assert len(bayesian_kernels(bonn_paper)) == 16


def test_float_resnet18_cifar_has_the_usual_parameter_count():
    model = models.get("resnet18_cifar", precision="float", bonn=False)
    assert trainable_count(model) == RESNET18_CIFAR_PARAMS


# --- structure: what each scope binarizes -----------------------------------------------

def _binary_layers(model):
    return [layer for layer in model.layers
            if isinstance(layer, (lq.layers.QuantConv2D, lq.layers.QuantDense))]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("scope", ["paper", "full"])
def test_scope_structure_and_logits_contract(name, scope):
    native, kwargs, n_binary, n_shortcut, _ = ARCHITECTURES[name]
    shape = native if name == "small_cnn" else (32, 32, 3)
    model = models.get(name, input_shape=shape, scope=scope, num_classes=7,
                       lam=2e-4, nu=3e-2, scale="channel", **kwargs)
    assert model.name.startswith(name) and scope in model.name
    assert model.output_shape == (None, 7)
    logits = model.layers[-1]
    assert logits.name == "logits" and isinstance(logits, tf.keras.layers.Dense)
    assert logits.activation is tf.keras.activations.linear  # logits, no softmax
    assert len(logits.input_shape) == 2  # the penultimate feature vector

    binary = _binary_layers(model)
    expected = n_binary + (n_shortcut + 1 if scope == "full" else 0)
    assert len(binary) == expected
    for layer in binary:
        assert isinstance(layer.input_quantizer, lq.quantizers.SteSign)
        assert isinstance(layer.kernel_quantizer, BayesianSign)
        assert layer.kernel_quantizer.initial_lam == 2e-4
        assert layer.kernel_quantizer.initial_nu == 3e-2
        assert layer.kernel_quantizer.scale == "channel"
        assert isinstance(layer.kernel_constraint, lq.constraints.WeightClip)
        assert not layer.use_bias
        if isinstance(layer, lq.layers.QuantConv2D) and layer.kernel_size == (3, 3):
            assert layer.padding == "same" and layer.pad_values == 1.0
    assert len({id(layer.kernel_quantizer) for layer in binary}) == len(binary)
    assert len(bayesian_kernels(model)) == expected

    real = [layer for layer in model.layers if type(layer) in
            (tf.keras.layers.Conv2D, tf.keras.layers.Dense)]
    real_names = sorted(layer.name for layer in real)
    if scope == "paper":
        assert len(real) == 1 + n_shortcut + 1  # stem, shortcuts, classifier
        assert logits.use_bias and not isinstance(logits, lq.layers.QuantDense)
    else:
        assert real_names == ["stem_conv"]  # only the first convolution stays real
        assert isinstance(logits, lq.layers.QuantDense)


@pytest.mark.parametrize("scope", ["paper", "full"])
def test_larq_baseline_and_float_variant_have_the_same_architecture(scope):
    bonn = models.get("small_cnn", scope=scope)
    larq = models.get("small_cnn", scope=scope, bonn=False)
    float_ = models.get("small_cnn", scope=scope, bonn=False, precision="float")
    assert all(isinstance(layer.kernel_quantizer, lq.quantizers.SteSign)
               for layer in _binary_layers(larq))
    assert not _binary_layers(float_)
    weight_layers = [[(layer.name, [tuple(w.shape) for w in layer.get_weights()])
                      for layer in m.layers
                      if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense))]
                     for m in (larq, float_)]
    assert weight_layers[0] == weight_layers[1]
    assert [layer.name for layer in bonn.layers] == [layer.name for layer in larq.layers]
    # the float variant puts its activation exactly where the binary one takes signs
    activations = [layer.name for layer in float_.layers
                   if isinstance(layer, tf.keras.layers.Activation)]
    assert activations == [f"{layer.name}_act" for layer in _binary_layers(larq)]


def test_float_variant_activation_choices_round_trip_through_config(tmp_path):
    model = models.get("small_cnn", precision="float", bonn=False, float_activation="htanh")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    act = model.get_layer("unit1_conv_act")
    np.testing.assert_array_equal(act(tf.constant([-3.0, 0.5, 2.0])).numpy(), [-1, 0.5, 1])
    linear = models.get("small_cnn", precision="float", bonn=False, float_activation="linear")
    assert not any(isinstance(layer, tf.keras.layers.Activation) for layer in linear.layers)


# --- binarized MAC share per scope ------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_binarized_mac_share_per_scope(name):
    native, kwargs, _, _, (binary, shortcut, stem, classifier) = ARCHITECTURES[name]
    total = binary + shortcut + stem + classifier
    shares = {}
    for scope in ("paper", "full"):
        model = models.get(name, scope=scope, bonn=False, **kwargs)
        assert model.input_shape == (None, *native)
        assert model.output_shape == (None, DEFAULT_CLASSES[name])
        counts = profile.mac_counts(model)
        expected = binary if scope == "paper" else binary + shortcut + classifier
        assert counts == {"binary": expected, "total": total}
        shares[scope] = profile.binary_mac_share(model)
        # larq's own summary reports the same ratio
        lines = []
        lq.models.summary(model, print_fn=lines.append)
        ratio = next(line for line in lines if "Ratio of MACs that are binarized" in line)
        assert f"{expected / total:.4f}" in ratio
    assert shares["full"] > shares["paper"] > 0.9
    assert profile.binary_mac_share(
        models.get(name, precision="float", bonn=False, **kwargs)) == 0.0


# --- LCE conversion ----------------------------------------------------------------------

def randomize_batch_norm(model, seed=0):
    """Non-trivial BatchNorm statistics, so the folded conversion is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.5, 2.0, c)])


# (name, kwargs, input shape for conversion): small inputs keep conversion fast; the
# networks are fully convolutional with global pooling.
CONVERSION_CASES = [
    ("small_cnn", {}, (28, 28, 1)),
    ("resnet18", {}, (32, 32, 3)),
    ("resnet18_cifar", {}, (16, 16, 3)),
    ("wrn22", {"width_factor": 1}, (16, 16, 3)),
]


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["paper", "full"])
@pytest.mark.parametrize("name,kwargs,shape", CONVERSION_CASES)
def test_lce_conversion_op_census_and_parity(name, kwargs, shape, scope):
    _, _, n_binary, n_shortcut, _ = ARCHITECTURES[name]
    tf.keras.utils.set_random_seed(3)
    model = models.get(name, input_shape=shape, scope=scope, bonn=True, **kwargs)
    randomize_batch_norm(model)
    flatbuffer = convert.convert(model)
    census = convert.op_census(flatbuffer)
    if scope == "paper":
        # every binary 3x3 conv is an LceBconv2d; stem and 1x1 shortcuts stay CONV_2D
        assert census["LceBconv2d"] == n_binary
        assert census["CONV_2D"] == 1 + n_shortcut
        assert census["LceQuantize"] == n_binary
        assert census["LceDequantize"] == 0
    else:
        # the binary 1x1 shortcuts convert too; LCE has no binary fully-connected op, so
        # the binary classifier becomes sign (LceQuantize -> LceDequantize) followed by a
        # float FULLY_CONNECTED with the +-1/mean(W) kernel stored in float32
        assert census["LceBconv2d"] == n_binary + n_shortcut
        assert census["CONV_2D"] == 1
        assert census["LceQuantize"] == n_binary + n_shortcut + 1
        assert census["LceDequantize"] == 1
    assert census["FULLY_CONNECTED"] == 1

    x = np.random.default_rng(1).uniform(-1, 1, (8, *shape)).astype("float32")
    agreement = convert.compare(model, flatbuffer, x)
    keras_out = model.predict(x, verbose=0)
    assert keras_out.shape == (8, DEFAULT_CLASSES[name])
    assert keras_out.std(axis=0).mean() > 1e-2  # outputs depend on the input
    per_sample = np.abs(keras_out - convert.tflite_predict(flatbuffer, x)).max(axis=1)
    # A pre-sign value within float rounding (~1e-6) of zero flips one bit and
    # legitimately moves that sample's logits; a conversion error moves all of them.
    assert np.sum(per_sample <= 1e-3) >= 6, per_sample
    assert np.median(per_sample) <= 1e-4, per_sample
    assert agreement.top1_agreement >= 0.75


def test_float_variant_converts_to_plain_tflite_ops():
    tf.keras.utils.set_random_seed(3)
    model = models.get("small_cnn", precision="float", bonn=False)
    randomize_batch_norm(model)
    flatbuffer = convert.convert(model)
    census = convert.op_census(flatbuffer)
    assert not any(op.startswith("Lce") for op in census)
    assert census["CONV_2D"] == 1 + 4 + 2  # stem, 4 units, 2 shortcuts
    assert census["RELU"] == 4
    x = np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    convert.compare(model, flatbuffer, x).check(atol=1e-4)


def test_bonn_model_trains_a_step():
    tf.keras.utils.set_random_seed(0)
    model = models.get("small_cnn", scope="full")
    model.compile(tf.keras.optimizers.Adam(1e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).uniform(-1, 1, (32, 28, 28, 1)).astype("float32")
    y = np.arange(32) % 10
    before = model.get_layer("unit2_conv").kernel.latent_variable.numpy().copy()
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert len(model.losses) == 4 + 2 + 1  # one Bayesian kernel loss per binary layer
    assert not np.array_equal(before, model.get_layer("unit2_conv").kernel.latent_variable.numpy())
