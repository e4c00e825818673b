"""tollgate/classify/scoring.py and calibration.py on hand-made vectors (no model)."""

from __future__ import annotations

import numpy as np

from tollgate.classify import calibration, scoring
from tollgate.classify.prompts import label_prompts


def unit(*xs: float) -> np.ndarray:
    return scoring.normalise(np.array([xs], dtype=np.float32))


def test_label_prompts_use_the_text_type_and_description() -> None:
    assert label_prompts("billing", None, None) == ["A text about billing."]
    assert label_prompts("billing", "money matters", "invoice") == [
        "An invoice about billing.",
        "An invoice about billing: money matters",
    ]


def test_examples_pull_a_label_vector_towards_them() -> None:
    prompt = unit(1, 0, 0)
    example = unit(0, 1, 0)
    plain = scoring.label_matrix([prompt], [None])
    steered = scoring.label_matrix([prompt], [example])
    assert np.allclose(plain, unit(1, 0, 0))
    assert np.allclose(steered, unit(1, 1, 0))


def test_each_example_weighs_as_much_as_the_prompt() -> None:
    prompt = unit(1, 0, 0)
    examples = np.concatenate([unit(0, 1, 0)] * 3)
    steered = scoring.label_matrix([prompt], [examples])
    assert np.allclose(steered, unit(1, 3, 0))


def test_single_label_probabilities_sum_to_one_and_sharpen_with_the_temperature() -> None:
    labels = np.concatenate([unit(1, 0), unit(0, 1)])
    text = unit(0.8, 0.6)
    p = scoring.single_label(text, labels)
    assert np.isclose(p.sum(), 1.0) and p[0, 0] > 0.9
    soft = scoring.single_label(text, labels, temperature=1.0)
    assert 0.5 < soft[0, 0] < 0.6


def test_multi_label_scores_each_label_on_its_own() -> None:
    labels = np.concatenate([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])
    text = unit(1, 1, 0)
    p = scoring.multi_label(text, labels)[0]
    assert p[0] > 0.5 and p[1] > 0.5 and p[2] < 0.5
    lone = scoring.multi_label(text, labels[:1])
    assert lone.shape == (1, 1) and lone[0, 0] > 0.5


def test_confidence_is_clipped_and_rounded_to_four_decimals() -> None:
    assert scoring.confidence(0.123456) == 0.1235
    assert scoring.confidence(1.0000001) == 1.0 and scoring.confidence(-1e-9) == 0.0


def test_fitting_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(7)
    true_t = 0.05
    cos = rng.uniform(-0.2, 0.6, size=(400, 4))
    p = scoring.softmax(cos / true_t)
    y = np.array([rng.choice(4, p=row) for row in p])
    fitted = calibration.fit_temperature([cos], [y])
    assert abs(fitted - true_t) < 0.01


def test_platt_fit_separates_true_labels() -> None:
    cos = np.array([[0.6, 0.1, 0.0], [0.1, 0.5, 0.0], [0.0, 0.1, 0.7], [0.55, 0.2, 0.1]])
    y = np.array([0, 1, 2, 0])
    a, b = calibration.fit_platt([cos], [y])
    assert a > 0
    assert calibration.platt_nll([cos], [y], a, b) < calibration.platt_nll([cos], [y], 1.0, 0.0)


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    conf = np.array([0.75, 0.75, 0.75, 0.75])
    assert calibration.expected_calibration_error(conf, np.array([True, True, True, False])) == 0.0
    assert calibration.expected_calibration_error(conf, np.array([False] * 4)) == 0.75


def test_temperature_fit_reaches_flat_temperatures_well_inside_its_grid() -> None:
    # weakly informative cosines (the public e-mail set zero-shot) want T far above the shipped one
    rng = np.random.default_rng(11)
    true_t = 0.3
    cos = rng.uniform(-0.2, 0.6, size=(2000, 3))
    p = scoring.softmax(cos / true_t)
    y = np.array([rng.choice(3, p=row) for row in p])
    fitted = calibration.fit_temperature([cos], [y])
    assert abs(fitted - true_t) < 0.06 and fitted < 0.49
