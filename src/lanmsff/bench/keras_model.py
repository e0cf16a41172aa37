"""The authors' LANMSFF in Keras 3 / TensorFlow, layer by layer in their creation order.

This is the reference network of AE-1129/LANMSFF (``model.ipynb``, ``MassAtt_module.ipynb``,
``PWFS_module.ipynb``) as the authors wrote it, shared by two users that run under a TensorFlow
environment, never under the project's own venv:

* ``tests/fixtures/keras/make_reference.py`` builds it to write the Keras weight fixture;
* :mod:`lanmsff.bench.peer` builds it to time the authors' code next to ours (``make bench-peer``).

It imports only keras, tensorflow (and nothing of lanmsff), so it can be loaded by file path from a
TensorFlow environment in which lanmsff is not installed. The layers are created in the reference's
order, so Keras' automatic layer names (``conv2d_3``, ``batch_normalization_7``, ...) are those of
``tests/fixtures/keras/LAYOUT.md``.
"""

from __future__ import annotations

import keras
import keras.ops as ops
import tensorflow as tf
from keras.layers import (
    BatchNormalization,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Dropout,
    GlobalAveragePooling2D,
    Lambda,
    Layer,
    MaxPooling2D,
    ReLU,
    Reshape,
    SeparableConv2D,
)

NUM_CLASSES = 7
INPUT_SHAPE = (64, 64, 1)


# --------------------------------------------------------------------------- reference layers
class ChannelShuffle(Layer):
    def __init__(self, groups=2, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def call(self, x):
        # x: (batch, h, w, c)
        batch_size, h, w, c = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2], tf.shape(x)[3]
        channels_per_group = c // self.groups
        x = tf.reshape(x, [batch_size, h, w, self.groups, channels_per_group])
        x = tf.transpose(x, [0, 1, 2, 4, 3])
        x = tf.reshape(x, [batch_size, h, w, c])
        return x


class PWFS(Layer):
    def call(self, inputs):
        split1, split2, split3 = tf.split(inputs, num_or_size_splits=3, axis=-1)
        min_split = tf.minimum(tf.minimum(split1, split2), split3)
        max_split = tf.maximum(tf.maximum(split1, split2), split3)
        median_values = split1 + split2 + split3 - min_split - max_split
        return 0.5 * (max_split + median_values)


def two_path(input_tensor, filters, kernel_size, strides=(1, 1), padding="valid"):
    filters_per_group = filters // 2
    input_tensor_shuffled = ChannelShuffle(groups=2)(input_tensor)
    group1, group2 = ops.split(input_tensor_shuffled, 2, axis=-1)

    # first stage: H (plain) / L (dilated) Conv2D
    conv_h1 = Conv2D(filters_per_group, kernel_size, kernel_initializer="he_uniform", strides=strides, padding=padding)(
        group1
    )
    conv_h1 = BatchNormalization()(conv_h1)
    conv_h1 = ReLU()(conv_h1)
    conv_l1 = Conv2D(
        filters_per_group,
        kernel_size,
        kernel_initializer="he_uniform",
        dilation_rate=2,
        strides=strides,
        padding=padding,
    )(group2)
    conv_l1 = BatchNormalization()(conv_l1)
    conv_l1 = ReLU()(conv_l1)
    x1 = Concatenate(axis=-1)([conv_h1, conv_l1])

    # second stage: SeparableConv2D
    conv_h2 = SeparableConv2D(
        filters_per_group,
        kernel_size,
        depthwise_initializer="he_uniform",
        pointwise_initializer="he_uniform",
        strides=strides,
        padding=padding,
    )(x1)
    conv_h2 = BatchNormalization()(conv_h2)
    conv_h2 = ReLU()(conv_h2)
    conv_l2 = SeparableConv2D(
        filters_per_group,
        kernel_size,
        depthwise_initializer="he_uniform",
        pointwise_initializer="he_uniform",
        dilation_rate=2,
        strides=strides,
        padding=padding,
    )(x1)
    conv_l2 = BatchNormalization()(conv_l2)
    conv_l2 = ReLU()(conv_l2)
    x2 = Concatenate(axis=-1)([conv_h2, conv_l2])

    # third stage: Conv2D
    conv_h3 = Conv2D(filters_per_group, kernel_size, kernel_initializer="he_uniform", strides=strides, padding=padding)(
        x2
    )
    conv_h3 = BatchNormalization()(conv_h3)
    conv_h3 = ReLU()(conv_h3)
    conv_l3 = Conv2D(
        filters_per_group,
        kernel_size,
        kernel_initializer="he_uniform",
        dilation_rate=2,
        strides=strides,
        padding=padding,
    )(x2)
    conv_l3 = BatchNormalization()(conv_l3)
    conv_l3 = ReLU()(conv_l3)
    return Concatenate(axis=-1)([conv_h3, conv_l3])


def MassAtt(input_tensor, ratio=4):
    # channel attention map (squeeze-excitation)
    num_input_channels = input_tensor.shape[-1]
    squeeze = GlobalAveragePooling2D()(input_tensor)
    squeeze = Reshape((1, 1, num_input_channels))(squeeze)
    excitation = Dense(units=num_input_channels // ratio, activation="relu")(squeeze)
    channel_att_map = Dense(units=num_input_channels, activation="sigmoid")(excitation)

    # spatial attention map
    spatial_attention = Lambda(lambda x: tf.reduce_mean(x, axis=-1, keepdims=True))(input_tensor)
    x = Conv2D(filters=2, kernel_size=3, kernel_initializer="he_uniform", activation="relu", strides=2, padding="same")(
        spatial_attention
    )
    x = Conv2D(filters=4, kernel_size=3, kernel_initializer="he_uniform", activation="relu", strides=2, padding="same")(
        x
    )
    x = Conv2DTranspose(4, (3, 3), activation="relu", padding="same", strides=2)(x)
    spatial_att_map = Conv2DTranspose(1, (3, 3), activation="sigmoid", padding="same", strides=2)(x)

    return channel_att_map * spatial_att_map


def build_reference(num_classes: int = NUM_CLASSES, input_shape: tuple[int, int, int] = INPUT_SHAPE):
    """Return (model, fused_feature_tensor) exactly as model.ipynb builds them (softmax output)."""
    inp = keras.Input(shape=input_shape)

    # Block 1
    b1 = Conv2D(66, (3, 3), kernel_initializer="he_uniform", padding="same")(inp)
    b1 = BatchNormalization()(b1)
    b1 = ReLU()(b1)
    b1 = SeparableConv2D(
        66, (3, 3), depthwise_initializer="he_uniform", pointwise_initializer="he_uniform", padding="same"
    )(b1)
    b1 = BatchNormalization()(b1)
    b1 = ReLU()(b1)
    b1 = Conv2D(66, (3, 3), kernel_initializer="he_uniform", padding="same")(b1)
    b1 = BatchNormalization()(b1)
    b1 = MaxPooling2D(pool_size=2)(b1)
    b1 = ReLU()(b1)
    b1 = Dropout(0.4)(b1)

    # Block 2
    b2i = two_path(b1, filters=72, kernel_size=3, strides=(1, 1), padding="same")
    b2 = MassAtt(b2i, ratio=4)
    b2 = b2 * b2i
    b2 = Conv2D(72, kernel_size=(1, 1), kernel_initializer="he_uniform", padding="same")(b2)
    b2 = BatchNormalization()(b2)
    b2 = MaxPooling2D(pool_size=2)(b2)
    b2 = ReLU()(b2)
    b2 = Dropout(0.4)(b2)

    # Block 3
    b3 = Conv2D(78, (3, 3), kernel_initializer="he_uniform", padding="same")(b2)
    b3 = BatchNormalization()(b3)
    b3 = ReLU()(b3)
    b3 = SeparableConv2D(
        78, (3, 3), depthwise_initializer="he_uniform", pointwise_initializer="he_uniform", padding="same"
    )(b3)
    b3 = BatchNormalization()(b3)
    b3 = ReLU()(b3)
    b3 = Conv2D(78, (3, 3), kernel_initializer="he_uniform", padding="same")(b3)
    b3 = BatchNormalization()(b3)
    b3 = MaxPooling2D(pool_size=2)(b3)
    b3 = ReLU()(b3)
    b3 = Dropout(0.4)(b3)

    # Block 4
    b4i = two_path(b3, filters=84, kernel_size=3, strides=(1, 1), padding="same")
    b4 = MassAtt(b4i, ratio=4)
    b4 = b4 * b4i
    b4 = Conv2D(84, kernel_size=(1, 1), kernel_initializer="he_uniform", padding="same")(b4)
    b4 = BatchNormalization()(b4)
    b4 = MaxPooling2D(pool_size=2)(b4)
    b4 = ReLU()(b4)
    b4 = Dropout(0.4)(b4)

    # multi-scale fusion
    b1 = PWFS()(b1)
    b2 = PWFS()(b2)
    b3 = PWFS()(b3)
    b1 = GlobalAveragePooling2D()(b1)
    b2 = GlobalAveragePooling2D()(b2)
    b3 = GlobalAveragePooling2D()(b3)
    b4 = GlobalAveragePooling2D()(b4)
    f = Concatenate(axis=-1)([b1, b2, b3, b4])

    output = Dense(num_classes, activation="softmax")(f)
    return keras.Model(inputs=inp, outputs=output), f
