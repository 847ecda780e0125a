import torch

from model.alexnet import AlexNet, AlexNetConfig, count_parameters


def test_parameter_count_matches_report_section_6():
    assert count_parameters(AlexNet(AlexNetConfig(batch_norm=False))) == 23_272_266


def test_batch_norm_adds_two_parameters_per_conv_channel():
    channels = 64 + 192 + 384 + 256 + 256
    assert count_parameters(AlexNet(AlexNetConfig(batch_norm=True))) == 23_272_266 + 2 * channels


def test_output_shape():
    for bn in (False, True):
        out = AlexNet(AlexNetConfig(batch_norm=bn)).eval()(torch.zeros(5, 3, 32, 32))
        assert out.shape == (5, 10)


def test_batch_norm_sits_after_each_conv_before_its_relu():
    layers = list(AlexNet(AlexNetConfig(batch_norm=True)).features)
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Conv2d):
            assert isinstance(layers[i + 1], torch.nn.BatchNorm2d)
            assert isinstance(layers[i + 2], torch.nn.ReLU)


def test_dropout_before_fc6_and_fc7():
    kinds = [type(m).__name__ for m in AlexNet().classifier]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
