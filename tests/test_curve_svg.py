"""The best trial's learning curve, drawn as SVG text (search/study/curve_svg.py)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from search.study.curve_svg import HEIGHT, TOP, WIDTH, curve_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(curves: dict[str, list[float]], title: str = "t") -> ET.Element:
    return ET.fromstring(curve_svg(curves, title))


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def points(line: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]  # type: ignore[misc]


def test_two_curves_one_point_per_epoch_the_best_epoch_marked_and_labelled():
    svg = parse({"train_acc": [0.3, 0.5, 0.6, 0.7], "val_acc": [0.35, 0.52, 0.58, 0.56]}, "s: trial 3 (val_acc 0.5800)")
    assert (svg.get("width"), svg.get("height")) == (str(WIDTH), str(HEIGHT))
    train, val = svg.findall(f"{SVG}polyline")
    assert len(points(train)) == len(points(val)) == 4
    assert [x for x, _ in points(train)] == [x for x, _ in points(val)]  # epochs share the x axis
    ys = [y for _, y in points(train)]
    assert ys == sorted(ys, reverse=True)  # rising accuracy is drawn upwards (SVG y grows down)
    labels = texts(svg)
    assert "s: trial 3 (val_acc 0.5800)" in labels and "best epoch 3 (0.5800)" in labels
    assert {"train accuracy", "validation accuracy", "epoch", "accuracy"} <= set(labels)
    assert {"0.30", "0.70"} <= set(labels) and {"1", "4"} <= set(labels)  # axis ends: values and epochs
    best = [ln for ln in svg.findall(f"{SVG}line") if ln.get("stroke-dasharray") and ln.get("y1") == str(TOP)]
    assert len(best) == 1 and float(best[0].get("x1", "nan")) == points(val)[2][0]


def test_title_is_escaped_and_odd_curves_still_draw():
    svg = parse({"val_acc": [0.5]}, 'a<b & "c"')
    assert 'a<b & "c"' in texts(svg)
    assert len(points(svg.find(f"{SVG}polyline"))) == 1  # type: ignore[arg-type]
    svg = parse({"train_acc": [math.nan, 0.4], "val_acc": [0.2, math.inf]})
    assert [len(points(p)) for p in svg.findall(f"{SVG}polyline")] == [1, 1]  # non-finite points left out
    assert "best epoch 1 (0.2000)" in texts(svg)
    assert not parse({}).findall(f"{SVG}polyline")  # no epochs: axes only


def test_long_trials_get_at_most_ten_epoch_ticks():
    svg = parse({"train_acc": [0.5] * 100, "val_acc": [0.5] * 100})
    epochs = [t for t in texts(svg) if t.isdigit()]
    assert epochs[0] == "1" and len(epochs) == 10
