"""ppq2l.predict without a model: the one loop (batches across readable inputs, error records,
non-finite scores, order), numpy images, the exit rule, the preprocessing resolution and the
Predictor's argument checks. The backends are numpy fakes, so none of this needs torch."""
import logging

import cv2
import numpy as np
import pytest

from ppq2l.errors import ConfigError, DataError
from ppq2l.predict import (
    DEFAULT_POSTPROCESS,
    EVAL_OPS_KEY,
    INFER_OPS_KEY,
    Backend,
    Predictor,
    exit_status,
    failure_summary,
    inference_transforms,
)

OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 8}},
       {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
ROW = [0.1, 0.3, 0.5, 0.7, 0.9]


class FakeModel:
    """Scores ROW for every image, NaN for images whose first pixel value is in `nan_below`;
    remembers the shape of every batch it was given."""

    def __init__(self, nan_below=None):
        self.batches = []
        self.nan_below = nan_below

    def __call__(self, batch):
        self.batches.append(batch.shape)
        scores = np.tile(np.asarray(ROW, np.float32), (len(batch), 1))
        if self.nan_below is not None:
            scores[batch[:, 0, 0, 0] < self.nan_below, 2] = np.nan
        return scores


def predictor_on(model, ops=OPS, **options):
    backend = Backend(run=model, preprocess=ops, postprocess=dict(DEFAULT_POSTPROCESS),
                      label_names=[f"c{index}" for index in range(5)], broken_advice="fix it")
    return Predictor.from_backend(backend, logger=logging.getLogger("test_predict"), **options)


def picture(seed, height=20, width=30):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def files(tmp_path):
    """good0.png ... good4.png and two undecodable files, named so that they sort interleaved."""
    names = ["a_good.png", "b_bad.jpg", "c_good.png", "d_good.png", "e_bad.jpg", "f_good.png",
             "g_good.png"]
    for index, name in enumerate(names):
        if "bad" in name:
            (tmp_path / name).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        else:
            assert cv2.imwrite(str(tmp_path / name), picture(index))
    return [tmp_path / name for name in names]


def test_batches_are_formed_from_the_readable_files_across_the_input(files):
    model = FakeModel()
    records = predictor_on(model, batch_size=2)(files)
    assert model.batches == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]  # 5 readable images
    assert [record["file_name"] for record in records] == [str(path) for path in files]
    for path, record in zip(files, records):
        if "bad" in path.name:
            assert set(record) == {"file_name", "error"} and "cannot decode" in record["error"]
        else:
            assert record == {"class_ids": [2, 3, 4], "scores": [0.5, 0.7, 0.9],
                              "label_names": ["c2", "c3", "c4"], "file_name": str(path)}


def test_a_folder_expands_to_its_sorted_files(files):
    records = predictor_on(FakeModel(), batch_size=3)([str(files[0].parent)])
    assert [record["file_name"] for record in records] == [str(path) for path in files]


def test_non_finite_scores_become_error_records_and_are_warned_once(files, caplog):
    good = [path for path in files if "good" in path.name]
    # NormalizeImage with ImageNet statistics: a pixel value of 0 gives about -2.1
    dark = good[0].parent / "dark.png"
    assert cv2.imwrite(str(dark), np.zeros((20, 30, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="test_predict"):
        records = predictor_on(FakeModel(nan_below=-2.0), batch_size=4)([good[0], dark, good[1], dark])
    assert [("error" in record) for record in records] == [False, True, False, True]
    assert "non-finite scores" in records[1]["error"] and "fix it" in records[1]["error"]
    assert records[2]["class_ids"] == [2, 3, 4]
    assert sum("non-finite" in message for message in caplog.messages) == 1


def test_numpy_rgb_images_are_preprocessed_like_their_files(tmp_path):
    image = picture(5, 33, 47)
    path = tmp_path / "image.png"
    assert cv2.imwrite(str(path), image[..., ::-1])  # PNG is lossless; OpenCV writes BGR
    for to_rgb in (True, False):
        ops = [{"DecodeImage": {"to_rgb": to_rgb}}, *OPS[1:]]
        predictor = predictor_on(FakeModel(), ops=ops)
        assert np.array_equal(predictor.preprocess(image), predictor.preprocess(path))
    predictor = predictor_on(FakeModel())
    records = predictor([path, image, image.astype(np.float32), image[..., 0]])
    assert [record["file_name"] for record in records] == [
        str(path), "<array 1>", "<array 2>", "<array 3>"]
    assert records[1]["class_ids"] == records[0]["class_ids"] == [2, 3, 4]
    assert "RGB uint8 of shape (H, W, 3)" in records[2]["error"]
    assert "(30, 47)" not in records[3]["error"] and "(33, 47)" in records[3]["error"]


def test_a_4d_array_is_a_batch_of_images():
    model = FakeModel()
    scores = predictor_on(model, batch_size=2).scores(np.stack([picture(1), picture(2), picture(3)]))
    assert scores.shape == (3, 5) and scores.dtype == np.float32
    assert np.allclose(scores, ROW)
    assert model.batches == [(2, 3, 8, 8), (1, 3, 8, 8)]
    names = [r["file_name"] for r in predictor_on(FakeModel())(np.stack([picture(1), picture(2)]))]
    assert names == ["<array 0>", "<array 1>"]


def test_images_of_another_size_start_a_new_batch(tmp_path):
    ops = [{"DecodeImage": None}, {"ResizeImage": {"resize_short": 8}},
           {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
    inputs = [picture(1, 20, 20), picture(2, 20, 20), picture(3, 20, 40), picture(4, 20, 20)]
    model = FakeModel()
    records = predictor_on(model, ops=ops, batch_size=4)(inputs)
    assert model.batches == [(2, 3, 8, 8), (1, 3, 8, 16), (1, 3, 8, 8)]
    assert [record["file_name"] for record in records] == [f"<array {i}>" for i in range(4)]
    assert predictor_on(FakeModel(), ops=ops, batch_size=4).scores(inputs).shape == (4, 5)


def test_scores_of_an_unreadable_file_is_an_error_naming_it(files):
    with pytest.raises(DataError, match="b_bad.jpg: cannot decode"):
        predictor_on(FakeModel()).scores(files)


def test_threshold_and_postprocess_options_replace_the_backends(files, caplog):
    records = predictor_on(FakeModel(), threshold=0.6)(files[:1])
    assert records[0]["class_ids"] == [3, 4]
    per_class = predictor_on(FakeModel(), threshold=[0.05, 0.5, 0.5, 0.8, 0.95])(files[:1])
    assert per_class[0]["class_ids"] == [0, 2]
    with caplog.at_level(logging.WARNING, logger="test_predict"):
        records = predictor_on(FakeModel(), postprocess={"name": "MultiLabelThreshOutput",
                                                         "threshold": 0.2})(files[:1])
    assert records[0]["class_ids"] == [1, 2, 3, 4]
    assert records[0]["label_names"] == ["c1", "c2", "c3", "c4"]  # the model's names are kept
    assert any("postprocess replaces" in message for message in caplog.messages)


def test_a_missing_label_file_names_the_setting_and_the_folder_it_is_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    backend = Backend(run=FakeModel(), preprocess=OPS, source="run/best_model.pth",
                      postprocess={**DEFAULT_POSTPROCESS, "class_id_map_file": "data/labels.txt"},
                      postprocess_where="Infer.PostProcess")
    with pytest.raises(DataError, match=f"Infer.PostProcess of run/best_model.pth: .*data/labels.txt"
                                        f".*relative paths are read from {tmp_path}"):
        Predictor.from_backend(backend)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.txt").write_text("".join(f"{i} n{i}\n" for i in range(5)))
    assert Predictor.from_backend(backend).postprocess.label_names == [f"n{i}" for i in range(5)]


def test_preprocessing_that_does_not_fit_the_model_is_a_config_error(files):
    backend = Backend(run=FakeModel(), preprocess=OPS, postprocess=dict(DEFAULT_POSTPROCESS),
                      input_size=[16, 16])
    with pytest.raises(ConfigError, match=r"gives \[8, 8\] images but the model takes \[16, 16\]"):
        Predictor.from_backend(backend)(files[:1])
    with pytest.raises(ConfigError, match="must end with a CHW array"):
        predictor_on(FakeModel(), ops=OPS[:2])(files[:1])


def test_exit_status_and_summary_follow_the_error_records():
    good = {"class_ids": [], "scores": [], "label_names": [], "file_name": "a.jpg"}
    bad = {"file_name": "b.jpg", "error": "cannot decode"}
    assert exit_status([good, good]) == 0 and failure_summary([good]) is None
    assert exit_status([good, bad]) == 1
    assert failure_summary([good, bad, bad | {"file_name": "c.jpg"}]) == (
        "2 of 3 files have no prediction (see their error records): b.jpg, c.jpg")


def config_with(eval_ops=None, infer_ops=None):
    config = {"Global": {}, "Arch": {}}
    if eval_ops is not None:
        config["DataLoader"] = {"Eval": {"dataset": {"transform_ops": eval_ops}}}
    if infer_ops is not None:
        config["Infer"] = {"transforms": infer_ops}
    return config


def test_inference_preprocessing_is_the_eval_ops(caplog):
    logger = logging.getLogger("test_predict")
    other = [OPS[0], {"ResizeImage": {"resize_short": 8}}, *OPS[2:]]
    with caplog.at_level(logging.WARNING, logger="test_predict"):
        assert inference_transforms(config_with(OPS, other), logger) == (OPS, EVAL_OPS_KEY)
    [warning] = caplog.messages
    assert f"{INFER_OPS_KEY} differs from {EVAL_OPS_KEY} at op 1" in warning
    assert "resize_short" in warning and "'size': 8" in warning
    caplog.clear()
    # the same ops written differently (null or {} keywords) are the same preprocessing
    same = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 8}},
            {"NormalizeImage": {"order": ""}}, {"ToCHWImage": {}}]
    with caplog.at_level(logging.WARNING, logger="test_predict"):
        inference_transforms(config_with(OPS, same), logger)
        ops, key = inference_transforms(config_with(OPS, OPS[:3]), logger)
    assert (ops, key) == (OPS, EVAL_OPS_KEY)
    assert len(caplog.messages) == 1 and "at op 3 (no op there" in caplog.messages[0]
    assert inference_transforms(config_with(infer_ops=other), logger) == (other, INFER_OPS_KEY)
    with pytest.raises(ConfigError, match="preprocessing is unknown"):
        inference_transforms(config_with(), logger)


def test_the_resolved_ops_are_a_copy():
    config = config_with(OPS)
    ops, _ = inference_transforms(config)
    ops[1]["ResizeImage"]["size"] = 99
    assert config["DataLoader"]["Eval"]["dataset"]["transform_ops"][1]["ResizeImage"]["size"] == 8


def test_wrong_model_paths_and_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model not found"):
        Predictor(tmp_path / "best_model.pth")
    with pytest.raises(ConfigError, match="folder without model.onnx"):
        Predictor(tmp_path)
    with pytest.raises(ConfigError, match="must be a path"):
        Predictor(None)
    (tmp_path / "weights.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match="use_gpu applies to an exported ONNX model"):
        Predictor(tmp_path / "weights.pth", use_gpu=True)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match="device applies to a checkpoint"):
        Predictor(tmp_path, device="cpu")


def test_wrong_inputs_are_config_errors_before_any_work(files, tmp_path):
    model = FakeModel()
    predictor = predictor_on(model)
    with pytest.raises(ConfigError, match=r"inputs\[1\]: .*nope.jpg is neither a file nor a folder"):
        predictor([files[0], tmp_path / "nope.jpg"])
    for wrong in ([3], 3, None):
        with pytest.raises(ConfigError, match=r"inputs\[0\]: expected a file or folder path"):
            predictor(wrong)
    with pytest.raises(ConfigError, match="batch_size must be a positive int"):
        predictor_on(model, batch_size=0)
    assert model.batches == []


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_worker_threads_give_the_same_records_and_batches(files, batch_size):
    serial_model, threaded_model = FakeModel(), FakeModel()
    serial = predictor_on(serial_model, batch_size=batch_size)(files * 3)
    threaded = predictor_on(threaded_model, batch_size=batch_size, num_workers=3)(files * 3)
    assert threaded == serial and len(serial) == 21
    assert threaded_model.batches == serial_model.batches


def test_the_threaded_loop_reads_its_input_lazily_within_the_bound(files):
    """A generator of inputs (a huge folder) is consumed only `prefetch` images ahead of the
    batches scored: memory does not grow with the number of files."""
    taken = []

    def inputs():
        for index in range(200):
            taken.append(index)
            path = files[index % len(files)]
            yield str(path), path

    model = FakeModel()
    predictor = predictor_on(model, batch_size=4, num_workers=2)
    assert predictor.prefetch == 4 + 2 * 2
    taken_at_batch = []
    run = predictor.backend.run
    predictor.backend.run = lambda batch: (taken_at_batch.append(len(taken)), run(batch))[1]
    records = list(predictor.iter_records(inputs()))
    assert len(records) == 200 and len(taken) == 200
    # before batch k runs, its 4 readable images and the error records between them were taken,
    # plus at most `prefetch` images behind them; 7 files hold 5 readable ones
    for number, count in enumerate(taken_at_batch, start=1):
        readable_files_needed = -(-4 * number // 5) * 7
        assert count <= readable_files_needed + predictor.prefetch


def test_a_config_error_in_a_worker_stops_the_run(files):
    with pytest.raises(ConfigError, match="must end with a CHW array"):
        predictor_on(FakeModel(), ops=OPS[:2], num_workers=2)(files)
    with pytest.raises(ConfigError, match=r"num_workers must be an int >= 0"):
        predictor_on(FakeModel(), num_workers=-1)
    with pytest.raises(ConfigError, match=r"num_workers must be an int >= 0"):
        predictor_on(FakeModel(), num_workers=True)


def test_scores_with_workers_equal_scores_without(files):
    good = [path for path in files if "good" in path.name]
    assert np.array_equal(predictor_on(FakeModel(), batch_size=2, num_workers=2).scores(good),
                          predictor_on(FakeModel(), batch_size=2).scores(good))
