"""tollgate/classify/scoring.py and calibration.py on hand-made vectors (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from tollgate.classify import calibration, scoring
from tollgate.classify.prompts import label_name, label_prompts


def unit(*xs: float) -> np.ndarray:
    return scoring.normalise(np.array([xs], dtype=np.float32))


def test_label_names_are_read_as_words() -> None:
    assert label_name("card_arrival") == "card arrival"
    assert label_name("lostCard") == "lost card"
    assert label_name("ENTY:food") == "enty food"
    assert label_name("visual-studio") == "visual studio"
    assert label_name("Billing questions") == "Billing questions", "a phrase is kept as written"


def test_label_prompts_are_the_name_its_templates_and_the_description() -> None:
    assert label_prompts("card_arrival", None) == ["card arrival", "a question about card arrival"]
    assert label_prompts("billing", " money matters ")[-1] == "billing: money matters"
    assert len(label_prompts("billing", "  ")) == 2, "a blank description adds nothing"


def test_zero_shot_label_vector_is_the_mean_of_its_prompts() -> None:
    model = scoring.label_model([np.concatenate([unit(1, 0), unit(0, 1)]), unit(0, 1)], [None, None])
    assert model.head is None and not model.few_shot
    assert np.allclose(model.prototypes, np.concatenate([unit(1, 1), unit(0, 1)]))
    assert np.allclose(model.logits(unit(1, 0)), [[np.sqrt(0.5), 0.0]])


def test_prototype_moves_to_the_examples_centroid_with_the_prompt_at_its_weight() -> None:
    zero = np.concatenate([unit(1, 0, 0), unit(0, 0, 1)])
    examples = np.concatenate([unit(0, 1, 0), unit(0, 1, 0)])
    protos = scoring.prototypes(zero, [examples, None])
    assert np.allclose(protos[0], unit(scoring.PROMPT_WEIGHT, 1, 0)[0])
    assert np.allclose(protos[1], zero[1]), "a label without examples keeps its zero-shot vector"


def test_few_shot_head_learns_what_the_prototypes_miss() -> None:
    # two labels whose prompts point the same way; only the examples tell them apart, along axis 2
    rng = np.random.default_rng(3)
    prompts = [unit(1, 0.1, 0), unit(1, -0.1, 0)]
    a = scoring.normalise(np.array([[1, 0.0, 1]]) + rng.normal(0, 0.05, (10, 3)))
    b = scoring.normalise(np.array([[1, 0.0, -1]]) + rng.normal(0, 0.05, (10, 3)))
    model = scoring.label_model(prompts, [a, b])
    assert model.few_shot and model.head is not None and model.head.shape == (2, 3)
    texts = scoring.normalise(np.array([[1, 0.0, 0.8], [1, 0.0, -0.8]]))
    p = scoring.single_label(texts, model)
    assert p[0].argmax() == 0 and p[1].argmax() == 1
    assert np.allclose(p.sum(axis=1), 1.0)
    again = scoring.label_model(prompts, [a, b])
    assert again.head is not None and np.array_equal(model.head, again.head), "deterministic"


def test_temperature_grows_with_the_label_count_and_has_a_floor() -> None:
    a, b = scoring.ZERO_SHOT_T
    assert scoring.temperature(77, few_shot=False) == pytest.approx(a + b * np.log(77))
    assert scoring.temperature(1, few_shot=True) == scoring.temperature(2, few_shot=True)
    assert scoring.temperature(10**9, few_shot=True) >= scoring.MIN_TEMPERATURE


def test_single_label_probabilities_sum_to_one_and_sharpen_with_the_temperature() -> None:
    model = scoring.LabelModel(np.concatenate([unit(1, 0), unit(0, 1)]))
    text = unit(0.8, 0.6)
    sharp = scoring.single_label(text, model, temp=0.02)
    assert np.isclose(sharp.sum(), 1.0) and sharp[0, 0] > 0.99
    soft = scoring.single_label(text, model, temp=1.0)
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


def test_log_temperature_fit_recovers_a_label_count_dependent_temperature() -> None:
    rng = np.random.default_rng(5)
    logits, truths = [], []
    for n_labels in (2, 8, 32, 128):
        t = 0.02 + 0.01 * np.log(n_labels)
        z = rng.normal(0.0, 0.15, size=(600, n_labels))
        p = scoring.softmax(z / t)
        logits.append(z)
        truths.append(np.array([rng.choice(n_labels, p=row) for row in p]))
    a, b = calibration.fit_log_temperature(logits, truths, (0.0, 0.1), (-0.02, 0.03))
    assert abs(a - 0.02) < 0.01 and abs(b - 0.01) < 0.004
    assert calibration.log_temperature_nll(logits, truths, a, b) <= calibration.log_temperature_nll(
        logits, truths, 0.05, 0.0
    )
