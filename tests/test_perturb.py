"""Test-time perturbations: parsed from names, deterministic, and each changes the image as documented."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fid_bench.data.jpeg_quality import estimate_quality
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.perturb import Perturbation, parse_perturbation, parse_perturbations


@pytest.fixture
def img() -> Image.Image:
    """Texture with fine detail (noise on a gradient): blur and JPEG have something to remove."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :64]  # 64 wide, 48 high: width and height differ on purpose
    base = (xx * 2.0 + yy * 1.5)[:, :, None].repeat(3, axis=2)
    noisy = base + rng.normal(0, 40, (48, 64, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _high_freq_energy(im: Image.Image) -> float:
    a = np.asarray(im.convert("L"), dtype=np.float64)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(a - a.mean())))
    h, w = a.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    return float(spec[r > min(h, w) / 4].sum() / spec.sum())


@pytest.mark.parametrize(
    ("name", "family", "strength", "canonical"),
    [
        ("jpeg75", "jpeg", 75.0, "jpeg75"),
        ("JPEG90", "jpeg", 90.0, "jpeg90"),
        ("blur1", "blur", 1.0, "blur1"),
        ("blur0.5", "blur", 0.5, "blur0.5"),
        ("resize0.5", "resize", 0.5, "resize0.5"),
        ("resize.25", "resize", 0.25, "resize0.25"),
        ("crop0.8", "crop", 0.8, "crop0.8"),
        (" none ", "none", 0.0, "none"),
    ],
)
def test_parse(name: str, family: str, strength: float, canonical: str) -> None:
    p = parse_perturbation(name)
    assert (p.family, p.strength, p.name) == (family, strength, canonical)
    assert parse_perturbation(p.name) == p


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("gauss1", "unknown perturbation"),
        ("jpeg", "unknown perturbation"),
        ("jpeg0", "whole number in 1..100"),
        ("jpeg101", "whole number in 1..100"),
        ("jpeg75.5", "whole number in 1..100"),
        ("blur0", "sigma must be > 0"),
        ("resize1.5", r"fraction must be in \(0, 1\]"),
        ("crop0", r"fraction must be in \(0, 1\]"),
        ("crop-0.5", "unknown perturbation"),
    ],
)
def test_bad_names_are_one_line_errors(name: str, why: str) -> None:
    with pytest.raises(FidBenchError, match=why) as info:
        parse_perturbation(name)
    assert "\n" not in str(info.value)
    if why == "unknown perturbation":
        assert "jpeg<quality 1-100>" in str(info.value) and "crop<fraction 0-1>" in str(info.value)


def test_parse_list_and_comma_string() -> None:
    assert [p.name for p in parse_perturbations("jpeg75, blur1,,jpeg75")] == ["jpeg75", "blur1"]
    assert [p.name for p in parse_perturbations(["crop0.5", "resize0.5"])] == ["crop0.5", "resize0.5"]


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_jpeg_reencodes_at_the_stated_quality(img: Image.Image, quality: int, tmp_path: Path) -> None:
    p = parse_perturbation(f"jpeg{quality}")
    data = p.encode(img)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "JPEG" and estimate_quality(decoded.quantization) == quality
    out = p(img)
    assert out.size == img.size and out.mode == "RGB"
    err = np.abs(np.asarray(out, float) - np.asarray(img, float)).mean()
    assert err > 0.5  # lossy
    saved = p.save(img, tmp_path / "x")
    assert saved.suffix == ".jpg" and saved.read_bytes() == data  # one compression, not two


def test_lower_jpeg_quality_loses_more(img: Image.Image) -> None:
    errs = [np.abs(np.asarray(parse_perturbation(f"jpeg{q}")(img), float) - np.asarray(img, float)).mean()
            for q in (95, 75, 30)]  # fmt: skip
    assert errs[0] < errs[1] < errs[2]


def test_blur_lowers_high_frequency_energy(img: Image.Image) -> None:
    energies = [_high_freq_energy(img)] + [
        _high_freq_energy(parse_perturbation(f"blur{s}")(img)) for s in (0.5, 1, 2)
    ]
    assert energies == sorted(energies, reverse=True)
    assert energies[-1] < 0.5 * energies[0]
    assert parse_perturbation("blur1")(img).size == img.size


def test_resize_downscales_only(img: Image.Image) -> None:
    assert parse_perturbation("resize0.5")(img).size == (32, 24)
    assert parse_perturbation("resize0.25")(img).size == (16, 12)
    assert parse_perturbation("resize0.01")(img).size == (1, 1)  # never zero pixels
    assert parse_perturbation("resize1")(img).tobytes() == img.tobytes()


def test_centre_crop_keeps_the_centre(img: Image.Image) -> None:
    out = parse_perturbation("crop0.5")(img)
    assert out.size == (32, 24)
    expected = np.asarray(img)[12:36, 16:48]
    np.testing.assert_array_equal(np.asarray(out), expected)
    assert parse_perturbation("crop0.8")(img).size == (51, 38)


def test_deterministic_and_input_untouched(img: Image.Image) -> None:
    before = img.tobytes()
    for name in ("jpeg50", "blur1.5", "resize0.3", "crop0.7", "none"):
        # two perturbations parsed separately, on two copies of the image: the same pixels and bytes
        first, second = parse_perturbation(name), parse_perturbation(name)
        out = first(img.copy())
        assert out.tobytes() == second(img.copy()).tobytes(), name
        assert first.encode(img.copy()) == second.encode(img.copy()), name
        if name != "none":  # and they do change the image (a no-op would pass the lines above)
            assert out.size != img.size or out.tobytes() != before, name
    assert img.tobytes() == before
    assert parse_perturbation("none")(img).tobytes() == before


def test_non_rgb_input_and_png_save(tmp_path: Path, img: Image.Image) -> None:
    grey = img.convert("L")
    assert parse_perturbation("blur1")(grey).mode == "RGB"
    saved = parse_perturbation("crop0.5").save(img, tmp_path / "y")
    assert saved.suffix == ".png"
    with Image.open(saved) as back:
        assert back.format == "PNG"
        np.testing.assert_array_equal(np.asarray(back), np.asarray(parse_perturbation("crop0.5")(img)))


def test_severity_orders_each_family() -> None:
    def sev(names: list[str]) -> list[float]:
        return [parse_perturbation(n).severity for n in names]

    assert sev(["jpeg95", "jpeg75", "jpeg30"]) == sorted(sev(["jpeg95", "jpeg75", "jpeg30"]))
    assert sev(["resize0.9", "resize0.5", "resize0.25"]) == sorted(
        sev(["resize0.9", "resize0.5", "resize0.25"])
    )
    assert sev(["crop0.9", "crop0.5"]) == sorted(sev(["crop0.9", "crop0.5"]))
    assert Perturbation("none", 0.0).severity == 0.0
