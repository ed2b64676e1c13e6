"""Encoded and synthetic images shared by the transform tests."""
import cv2
import numpy as np


def encode(image: np.ndarray, extension: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


def textured_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth gradient with blocks: every RandAugment op visibly changes it."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    image[8:20, 10:30] = [220, 30, 60]
    noise = np.random.default_rng(seed).integers(0, 20, image.shape)
    return np.clip(image + noise + 30, 0, 225).astype(np.uint8)
