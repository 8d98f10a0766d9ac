"""The workflow's pictures: a PNG of the right size, not blank, showing the colours it promises
(read back from its pixels), and clear errors for bad input."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from pointseq.tiles.evaluation import class_colours
from pointseq.tiles.pictures import (CORRECT_COLOUR, IOU_COLOUR, LOSS_COLOUR, WRONG_COLOUR, save_error_map,
                                     save_prediction_preview, save_training_curves, top_down_raster)
from pointseq.tiles.synthetic import make_tiles

TOLERANCE = 2.5 / 255  # PNG stores 8 bits a channel


@pytest.fixture(scope="module")
def tile():
    return make_tiles(1, seed=3, size=30.0, density=4.0)[0]


def read_png(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3]


def pixel_share(image, colour):
    """Share of the pixels within a PNG's rounding of ``colour``."""
    return float(np.all(np.abs(image - np.asarray(colour)) <= TOLERANCE, axis=-1).mean())


def check_picture(path, min_size=(300, 500)):
    image = read_png(path)
    assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
    assert image.std() > 0.05  # not blank
    return image


def test_prediction_preview_shows_every_class_in_its_colour(tile, tmp_path):
    codes = tile["classification"]
    out = save_prediction_preview(tile["xyz"], codes, tmp_path / "preview.png")
    image = check_picture(out)
    colours = class_colours(np.unique(codes).tolist())
    for code, share in zip(*np.unique(codes, return_counts=True)):
        if share / len(codes) > 0.05:  # the classes seen from above, not the few noise points
            assert pixel_share(image, colours[int(code)]) > 0.005, f"class {code} not drawn"
    assert pixel_share(image, colours[7]) > 0  # the legend names noise too


def test_prediction_preview_draws_what_lies_on_top(tmp_path):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 20, (4000, 2))
    ground = np.c_[xy, np.zeros(len(xy))]
    roof = np.c_[rng.uniform(0, 8, (1000, 2)), np.full(1000, 8.0)]  # a roof over the south-west 8 m square
    points = np.vstack([ground, roof])
    codes = np.r_[np.full(len(ground), 2), np.full(len(roof), 6)]
    grid, cell = top_down_raster(points, (codes == 6).astype(int))
    corner = grid[-int(6 / cell):, :int(6 / cell)]  # the south-west corner, row 0 being north
    assert (corner == 1).mean() > 0.9
    image = check_picture(save_prediction_preview(points, codes, tmp_path / "p.png"))
    assert pixel_share(image, class_colours([6])[6]) > 0.01


def test_error_map_shows_correct_and_wrong(tile, tmp_path):
    reference = np.unique(tile["classification"], return_inverse=True)[1]
    predicted = reference.copy()
    east = tile["xyz"][:, 0] > np.quantile(tile["xyz"][:, 0], 0.7)
    predicted[east] = (predicted[east] + 1) % 4  # the east 30% all wrong
    image = check_picture(save_error_map(tile["xyz"], reference, predicted, tmp_path / "errors.png"))
    correct, wrong = pixel_share(image, CORRECT_COLOUR), pixel_share(image, WRONG_COLOUR)
    assert correct > 0.05 and wrong > 0.02
    assert correct > wrong


def test_training_curves_draw_loss_and_validation_iou(tmp_path):
    history = {"loss": [1.2, 0.8, 0.6, 0.5], "val_mean_iou": [0.3, 0.5, 0.6, 0.65]}
    image = check_picture(save_training_curves(history, tmp_path / "curves.png"), min_size=(300, 500))
    assert pixel_share(image, LOSS_COLOUR) > 0.002 and pixel_share(image, IOU_COLOUR) > 0.002


def test_training_curves_without_validation_draw_the_loss(tmp_path):
    image = check_picture(save_training_curves({"loss": [1.0, 0.7]}, tmp_path / "loss.png"))
    assert pixel_share(image, LOSS_COLOUR) > 0.002 and pixel_share(image, IOU_COLOUR) == 0


@pytest.mark.parametrize("call, message", [
    (lambda p: save_prediction_preview(np.zeros((0, 3)), np.zeros(0), p), "cloud_points must be a non-empty"),
    (lambda p: save_prediction_preview(np.zeros((5, 3)), np.zeros(4), p), "codes must hold one value per point"),
    (lambda p: save_error_map(np.zeros((5, 3)), np.zeros(5), np.zeros(3), p), "predicted_ids must hold"),
    (lambda p: save_training_curves({"accuracy": [0.5]}, p), "history must hold a non-empty 'loss'"),
])
def test_bad_input_names_the_argument(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_history_of_the_wrong_type_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="history must be a mapping"):
        save_training_curves([1.0, 0.5], tmp_path / "x.png")
