"""load_rgb / check_image: every pixel mode to correct RGB, orientation, frames, and one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from fid_bench.data.decode import BACKGROUND, ImageDecodeError, check_image, load_rgb
from fid_bench.errors import FidBenchError


def rgb_array(path: Path) -> np.ndarray:
    img = load_rgb(path)
    assert img.mode == "RGB"
    return np.asarray(img)


def assert_one_line(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message


def test_mode_1_and_l(tmp_path: Path) -> None:
    bits = np.zeros((4, 6), dtype=bool)
    bits[:, 3:] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    out = rgb_array(tmp_path / "b.png")
    assert out.shape == (4, 6, 3)
    assert (out[:, :3] == 0).all() and (out[:, 3:] == 255).all()

    gray = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(gray).save(tmp_path / "l.png")
    out = rgb_array(tmp_path / "l.png")
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_alpha_composited_on_white(tmp_path: Path) -> None:
    assert BACKGROUND == (255, 255, 255)
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 40, 0)
    rgba[..., 3] = [[255, 0, 128], [255, 0, 128]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = rgb_array(tmp_path / "rgba.png").astype(int)
    assert tuple(out[0, 0]) == (200, 40, 0)  # opaque: unchanged
    assert tuple(out[0, 1]) == (255, 255, 255)  # fully transparent: background
    # half transparent: a blend of colour and white
    expected = np.array([200, 40, 0]) * 128 / 255 + 255 * 127 / 255
    assert np.abs(out[0, 2] - expected).max() <= 1

    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    la.save(tmp_path / "la.png")
    out = rgb_array(tmp_path / "la.png")
    assert tuple(out[1, 0]) == (200, 200, 200)
    assert tuple(out[1, 1]) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 2))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([1, 1, 2, 2, 0, 0, 1, 2])
    pal.save(tmp_path / "p.png")
    out = rgb_array(tmp_path / "p.png")
    assert (
        tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 2]) == (0, 0, 255) and tuple(out[1, 0]) == (0, 0, 0)
    )

    pal.save(tmp_path / "pt.png", transparency=0)  # index 0 (black) is transparent
    out = rgb_array(tmp_path / "pt.png")
    assert tuple(out[1, 0]) == BACKGROUND
    assert tuple(out[0, 0]) == (255, 0, 0)

    pal.save(tmp_path / "pt.gif", transparency=0)
    out = rgb_array(tmp_path / "pt.gif")
    assert tuple(out[1, 1]) == BACKGROUND and tuple(out[1, 3]) == (0, 0, 255)


def test_cmyk(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (3, 3), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "c.tiff")
    out = rgb_array(tmp_path / "c.tiff")
    assert tuple(out[1, 1]) == (0, 255, 255)


def test_16_bit_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 300, 1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = rgb_array(tmp_path / "g16.png")
    # v * 255 / 65535, rounded: clipping would turn 300 and 1000 into 255
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 4, 128, 255])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_32_bit_int_and_float(tmp_path: Path) -> None:
    small = np.array([[0, 7, 255]], dtype=np.int32)  # already 8-bit values: kept
    Image.fromarray(small).save(tmp_path / "i8.tiff")
    assert Image.open(tmp_path / "i8.tiff").mode == "I"
    np.testing.assert_array_equal(rgb_array(tmp_path / "i8.tiff")[0, :, 0], [0, 7, 255])

    wide = np.array([[0, 257 * 100, 65535]], dtype=np.int32)  # 16-bit range: scaled
    Image.fromarray(wide).save(tmp_path / "i16.tiff")
    np.testing.assert_array_equal(rgb_array(tmp_path / "i16.tiff")[0, :, 0], [0, 100, 255])

    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)  # 0..1 floats
    Image.fromarray(unit).save(tmp_path / "f.tiff")
    assert Image.open(tmp_path / "f.tiff").mode == "F"
    np.testing.assert_array_equal(rgb_array(tmp_path / "f.tiff")[0, :, 0], [0, 128, 255])

    big = np.array([[-10.0, 490.0, 990.0]], dtype=np.float32)  # no fixed scale: stretched
    Image.fromarray(big).save(tmp_path / "fb.tiff")
    np.testing.assert_array_equal(rgb_array(tmp_path / "fb.tiff")[0, :, 0], [0, 128, 255])


def two_colour(width: int = 8, height: int = 4) -> Image.Image:
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = (255, 0, 0)  # left red
    arr[:, width // 2 :] = (0, 0, 255)  # right blue
    return Image.fromarray(arr)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_applied(tmp_path: Path, suffix: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / f"rot{suffix}"
    two_colour(16, 8).save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    out = rgb_array(path).astype(int)
    assert out.shape == (16, 8, 3)  # width and height swap
    # clockwise: the left (red) half ends up on top
    assert np.abs(out[2, 4] - (255, 0, 0)).max() < 40
    assert np.abs(out[13, 4] - (0, 0, 255)).max() < 40

    exif[0x0112] = 3  # rotate 180
    two_colour().save(tmp_path / "r180.png", exif=exif)
    out = rgb_array(tmp_path / "r180.png")
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[0, -1]) == (255, 0, 0)


def test_first_frame_of_animation(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    assert tuple(rgb_array(tmp_path / "anim.gif")[3, 3]) == (255, 0, 0)

    frames[1].save(tmp_path / "anim.png", save_all=True, append_images=[frames[2]], duration=50)
    assert tuple(rgb_array(tmp_path / "anim.png")[3, 3]) == (0, 255, 0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats_decode(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (10, 7), (10, 120, 230)).save(path, format=fmt)
    out = rgb_array(path).astype(int)
    assert out.shape == (7, 10, 3)
    assert np.abs(out[3, 5] - (10, 120, 230)).max() <= 6  # lossy formats are close, not exact
    info = check_image(path)
    assert (info.width, info.height, info.format) == (10, 7, fmt)


def test_truncated_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    for call in (load_rgb, check_image):
        with pytest.raises(ImageDecodeError) as err:
            call(path)
        assert err.value.reason == "truncated"
        assert_one_line(err, path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

    png = tmp_path / "cut.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    png.write_bytes((tmp_path / "ok.png").read_bytes()[:2000])
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(png)
    assert err.value.reason == "truncated"


def test_empty_missing_and_garbage(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.png"
    garbage.write_text("this is not an image\n")
    missing = tmp_path / "nope.png"
    cases = {empty: "empty_file", garbage: "undecodable", missing: "missing_file", tmp_path: "undecodable"}
    for path, reason in cases.items():
        for call in (load_rgb, check_image):
            with pytest.raises(ImageDecodeError) as err:
                call(path)
            assert err.value.reason == reason, (path, call)
            assert isinstance(err.value, FidBenchError)
            assert_one_line(err, path)


def test_decompression_bomb_guard_stays_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    assert load_rgb(path).size == (64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels > 2 * 100: Pillow refuses
    for call in (load_rgb, check_image):
        with pytest.raises(ImageDecodeError) as err:
            call(path)
        assert err.value.reason == "too_large"
        assert_one_line(err, path)


def test_check_image_hashes_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (5, 3), (9, 9, 9)).save(path)
    info = check_image(path)
    assert info.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()
    assert (info.width, info.height, info.format) == (5, 3, "PNG")
    # same pixels, other bytes (other format): another hash
    Image.new("RGB", (5, 3), (9, 9, 9)).save(tmp_path / "a.bmp")
    assert check_image(tmp_path / "a.bmp").sha1 != info.sha1


def test_loaded_image_is_detached_from_file(tmp_path: Path) -> None:
    path = tmp_path / "d.png"
    Image.new("RGB", (4, 4), (7, 8, 9)).save(path)
    img = load_rgb(path)
    path.unlink()  # pixels already decoded: the image survives its file
    assert img.getpixel((1, 1)) == (7, 8, 9)


def test_alignment_resizes_to_its_size_and_keeps_rgb() -> None:
    from fid_bench.data.decode import Alignment

    img = Image.new("RGB", (40, 24), (200, 30, 90))
    for fmt in ("jpeg", "png"):
        out = Alignment(format=fmt, quality=90 if fmt == "jpeg" else None, size=16).apply(img)
        assert out.size == (16, 16) and out.mode == "RGB", fmt
    assert Alignment(format="png", quality=None, size=None).apply(img).size == (40, 24)
