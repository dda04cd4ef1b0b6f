"""mmcore-image: pixel arrays equal transformers' image processors, unusable inputs fail with typed
errors, and image requests give the same greedy tokens as ExecuTorch's C++ MultimodalRunner."""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import mmcore_image
import mmcore_image.resample
import numpy as np
import pytest
from mmcore_image import ImageHandler, ImageInput, ImagePreprocessor, PreprocessSettings
from PIL import Image

from mmcore import GenerationConfig, PrefillContext
from mmcore.errors import ConfigError, InvalidInputError
from mmcore.program import MethodSpec, TensorSpec
from mmcore.runner import MultimodalRunner
from mmcore.testing import VisionEncoderSpec, photo_like

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=12)
TOLERANCE = 1e-5


# ----------------------------------------------------------------------------- synthetic images


def jpeg_bytes(image: Image.Image, quality: int = 90, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **save)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` (a decompression bomb's header)."""
    data = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


SIZES = [(1280, 960), (333, 517), (17, 900), (900, 17)]


@pytest.fixture(scope="module")
def photos() -> dict[str, tuple[Image.Image, Any]]:
    """name -> (image given to transformers, source given to mmcore-image)."""
    made: dict[str, tuple[Image.Image, Any]] = {}
    for i, (w, h) in enumerate(SIZES):
        image = photo_like(w, h, seed=i)
        made[f"{w}x{h}"] = (image, image)
    encoded = jpeg_bytes(photo_like(640, 427, seed=9))
    made["jpeg-640x427"] = (Image.open(io.BytesIO(encoded)).convert("RGB"), encoded)
    gray = photo_like(301, 211, seed=5).convert("L")
    made["gray-301x211"] = (gray, gray)
    return made


# ----------------------------------------------------------------------------- exactness


def _hf_clip(size: int) -> Callable[[Image.Image], np.ndarray]:
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return lambda image: processor(image, return_tensors="np")["pixel_values"]


def _hf_siglip(size: int) -> Callable[[Image.Image], np.ndarray]:
    from transformers import SiglipImageProcessor

    processor = SiglipImageProcessor(size={"height": size, "width": size}, do_convert_rgb=True)
    return lambda image: processor(image, return_tensors="np")["pixel_values"]


def _hf_gemma3(size: int) -> Callable[[Image.Image], np.ndarray]:
    from transformers import Gemma3ImageProcessor

    processor = Gemma3ImageProcessor(size={"height": size, "width": size})
    return lambda image: processor(image, return_tensors="np")["pixel_values"]


def _hf_smolvlm(longest: int, tile: int) -> Callable[[Image.Image], np.ndarray]:
    from transformers import SmolVLMImageProcessor

    processor = SmolVLMImageProcessor(
        do_image_splitting=False, size={"longest_edge": longest}, max_image_size={"longest_edge": tile}
    )
    return lambda image: processor(image, return_tensors="np")["pixel_values"][0]  # [1, 3, S, S]


def _hf_idefics3(longest: int, tile: int) -> Callable[[Image.Image], np.ndarray]:
    from transformers import Idefics3ImageProcessor

    processor = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": longest}, max_image_size={"longest_edge": tile}
    )
    return lambda image: processor(image, return_tensors="np")["pixel_values"][0]


HALF = {"do_normalize": True, "image_mean": (0.5,) * 3, "image_std": (0.5,) * 3}
CASES: dict[str, tuple[Callable[[], Callable[[Image.Image], np.ndarray]], PreprocessSettings]] = {
    "clip-llava-336": (
        lambda: _hf_clip(336),
        PreprocessSettings(
            size=(336, 336),
            resize_mode="shortest_edge_crop",
            resample="bicubic",
            do_normalize=True,
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        ),
    ),
    "siglip-224": (lambda: _hf_siglip(224), PreprocessSettings(size=(224, 224), resample="bicubic", **HALF)),
    "gemma3-896": (lambda: _hf_gemma3(896), PreprocessSettings(size=(896, 896), resample="bilinear", **HALF)),
    "gemma3-224": (lambda: _hf_gemma3(224), PreprocessSettings(size=(224, 224), resample="bilinear", **HALF)),
    "smolvlm-1456-364": (
        lambda: _hf_smolvlm(1456, 364),
        PreprocessSettings(size=(364, 364), resample="lanczos", pre_resize_longest_edge=1456, **HALF),
    ),
    "idefics3-512-256": (
        lambda: _hf_idefics3(512, 256),
        PreprocessSettings(size=(256, 256), resample="lanczos", pre_resize_longest_edge=512, **HALF),
    ),
}


@pytest.fixture(scope="module")
def hf_processors() -> dict[str, Callable[[Image.Image], np.ndarray]]:
    pytest.importorskip("transformers")
    return {name: make() for name, (make, _) in CASES.items()}


@pytest.mark.parametrize("resizer", ["native", "pillow"])
@pytest.mark.parametrize("case", list(CASES))
def test_pixels_equal_transformers_processors(case, resizer, photos, hf_processors, monkeypatch):
    if resizer == "pillow":  # as on a machine where the native resampler was not built
        monkeypatch.setattr(mmcore_image.resample, "native_resampler", lambda: None)
    settings = CASES[case][1]
    ours = ImagePreprocessor(settings)
    for name, (hf_image, source) in photos.items():
        if case.startswith(("smolvlm", "idefics3")) and hf_image.mode == "L":
            hf_image = hf_image.convert("RGB")  # their processors reject 2-D arrays; the conversion is the same
        expected = hf_processors[case](hf_image)  # [1, 3, H, W]
        got = ours(source)
        assert got.shape == expected.shape == (1, 3, *settings.size), name
        assert got.dtype == np.float32 and got.flags.c_contiguous
        diff = float(np.abs(got - expected).max())
        assert diff <= TOLERANCE, f"{case} on {name}: max abs diff {diff}"


def test_transformers_uses_its_slow_pil_processors_here():
    transformers = pytest.importorskip("transformers")
    from transformers.image_processing_utils import BaseImageProcessor

    # Without torchvision the "fast" processors are unavailable: what we compare against is the PIL/numpy one.
    assert isinstance(transformers.CLIPImageProcessor(), BaseImageProcessor)
    assert type(transformers.Gemma3ImageProcessor()).__name__ == "Gemma3ImageProcessor"


def test_jpeg_draft_is_close_and_opt_in():
    encoded = jpeg_bytes(photo_like(1280, 960, seed=3))
    exact = PreprocessSettings(size=(336, 336), resize_mode="shortest_edge_crop", do_normalize=False)
    full = ImagePreprocessor(exact)(encoded)
    drafted = ImagePreprocessor(dataclasses.replace(exact, jpeg_draft=True))(encoded)
    assert drafted.shape == full.shape
    assert 0 < float(np.abs(drafted - full).mean()) < 0.02  # draft decoding is approximate, on 0-1 values


# ----------------------------------------------------------------------------- decoding policy


def _pixels(source: Any, **changes: Any) -> np.ndarray:
    settings = PreprocessSettings(size=(8, 8), dtype=np.dtype(np.uint8), rank=3, resample="nearest", **changes)
    return ImagePreprocessor(settings)(source).transpose(1, 2, 0)  # [H, W, 3]


def test_alpha_is_composited_over_the_background_colour():
    rgba = Image.new("RGBA", (8, 8), (200, 10, 10, 0))
    rgba.putpixel((0, 0), (200, 10, 10, 255))
    out = _pixels(rgba)
    assert out[0, 0].tolist() == [200, 10, 10]
    assert out[4, 4].tolist() == [255, 255, 255]
    assert _pixels(rgba, background=(0, 0, 255))[4, 4].tolist() == [0, 0, 255]
    assert _pixels(Image.new("LA", (8, 8), (0, 0)))[3, 3].tolist() == [255, 255, 255]
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    assert _pixels(palette)[1, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (8, 8), 77), [77, 77, 77]),
        (Image.new("1", (8, 8), 1), [255, 255, 255]),
        (Image.new("I;16", (8, 8), 65535), [255, 255, 255]),
        (Image.new("I", (8, 8), 257 * 100), [100, 100, 100]),
        (Image.new("F", (8, 8), 0.5), [128, 128, 128]),
        (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), [255, 255, 255]),
        (Image.new("P", (8, 8), 0), [0, 0, 0]),
    ],
    ids=["L", "1", "I;16", "I", "F", "CMYK", "P"],
)
def test_modes_become_rgb(image, expected):
    assert _pixels(image)[2, 2].tolist() == expected


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    encoded = jpeg_bytes(image, quality=100, exif=exif.tobytes())
    out = _pixels(encoded)
    assert out[0, 4, 2] > 200 and out[7, 4, 0] > 200  # top is blue, bottom is red after rotation
    assert _pixels(encoded, exif_orientation=False)[4, 0, 2] > 200  # stored orientation: left is blue


def test_arrays_tensors_paths_and_files_agree(tmp_path):
    image = photo_like(37, 29, seed=4)
    hwc = np.asarray(image)
    path = tmp_path / "photo.png"
    image.save(path)
    expected = _pixels(image)
    torch = pytest.importorskip("torch")
    sources = [
        hwc,
        np.ascontiguousarray(hwc.transpose(2, 0, 1)),
        torch.from_numpy(hwc).permute(2, 0, 1),
        torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0),
        hwc.astype(np.float32) / 255,
        torch.from_numpy(hwc).permute(2, 0, 1).float() / 255,
        (torch.from_numpy(hwc).permute(2, 0, 1).float() / 255).half(),
        str(path),
        path,
        path.read_bytes(),
        io.BytesIO(path.read_bytes()),
    ]
    for source in sources:
        assert np.array_equal(_pixels(source), expected), type(source).__name__


def test_geometry_modes():
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    pad = _pixels(image, resize_mode="longest_edge_pad", fill=(1, 2, 3))
    assert pad[0, 0].tolist() == [1, 2, 3] and pad[4, 4].tolist() == [10, 20, 30] and pad[7, 7].tolist() == [1, 2, 3]
    crop = _pixels(image, resize_mode="shortest_edge_crop")
    assert (crop == [10, 20, 30]).all()


def test_output_dtypes_and_ranks():
    image = photo_like(50, 40)
    base = PreprocessSettings(size=(16, 24), **HALF)
    f32 = ImagePreprocessor(base)(image)
    assert f32.shape == (1, 3, 16, 24) and f32.dtype == np.float32 and f32.flags.c_contiguous
    assert -1.0 <= f32.min() and f32.max() <= 1.0
    bf16 = ImagePreprocessor(dataclasses.replace(base, dtype="bfloat16", rank=3))(image)
    assert bf16.shape == (3, 16, 24) and bf16.dtype == ml_dtypes.bfloat16 and bf16.flags.c_contiguous
    assert np.array_equal(bf16.view(np.uint16), _bfloat16_bits(f32[0]))
    f16 = ImagePreprocessor(dataclasses.replace(base, dtype=np.dtype(np.float16)))(image)
    assert f16.dtype == np.float16 and np.array_equal(f16, f32.astype(np.float16))
    raw = ImagePreprocessor(dataclasses.replace(base, dtype=np.dtype(np.uint8)))(image)
    assert raw.dtype == np.uint8 and raw.flags.c_contiguous
    assert np.array_equal(raw.astype(np.float32) / 255 * 2 - 1, np.round((f32 + 1) / 2 * 255) / 255 * 2 - 1)


def _bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even (what torch's `.to(torch.bfloat16)` does)."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def test_torch_dtypes_are_accepted_in_settings():
    torch = pytest.importorskip("torch")
    settings = PreprocessSettings(size=(4, 4), dtype=torch.bfloat16)
    assert settings.dtype == ml_dtypes.bfloat16
    assert PreprocessSettings(size=(4, 4), dtype=torch.uint8).dtype == np.uint8


# ----------------------------------------------------------------------------- handler, settings and safety


class StubProgram:
    """Just enough of `mmcore.program.Program` for preprocessing."""

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec

    def method_spec(self, name: str) -> MethodSpec:
        assert name == "vision_encoder"
        return MethodSpec(name=name, inputs=(self.spec,), outputs=(None,))


def _ctx(settings: dict[str, Any] | None = None, spec: TensorSpec | None = None, index: int = 3) -> PrefillContext:
    program = StubProgram(spec or TensorSpec(np.dtype(np.float32), (1, 3, 32, 32)))
    return PrefillContext(program=program, tokenizer=None, settings=settings or {}, index=index)  # type: ignore[arg-type]


def test_handler_reads_size_dtype_and_rank_from_the_encoder():
    handler = ImageHandler()
    pixels = handler.preprocess(ImageInput(photo_like(20, 30)), _ctx(spec=TensorSpec(np.dtype(np.uint8), (3, 24, 40))))
    assert pixels.shape == (3, 24, 40) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    settings = handler.settings_for(_ctx({"size": [16, 8], "resample": 2, "image_mean": 0.5, "image_std": 0.5}))
    assert settings.size == (16, 8) and settings.resample == "bilinear" and settings.do_normalize
    assert handler.parse_cli("cat.png").source == Path("cat.png")


def test_preprocessor_config_keys_are_accepted_as_is():
    handler = ImageHandler()
    clip = {  # openai/clip-vit-large-patch14's preprocessor_config.json, scaled to the 32x32 test encoder
        "crop_size": {"height": 28, "width": 28},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 30},
    }
    settings = handler.settings_for(_ctx(clip))
    assert (settings.resize_mode, settings.shortest_edge, settings.size) == ("shortest_edge_crop", 30, (28, 28))
    assert settings.resample == "bicubic" and settings.do_normalize
    assert settings.image_mean == (0.48145466, 0.4578275, 0.40821073)
    siglip = {"size": {"height": 24, "width": 16}, "do_rescale": False, "resample": 2}
    settings = handler.settings_for(_ctx(siglip))
    assert (settings.resize_mode, settings.size, settings.do_rescale) == ("stretch", (24, 16), False)
    idefics = {"size": {"longest_edge": 64}, "max_image_size": {"longest_edge": 32}}
    settings = handler.settings_for(_ctx(idefics))
    assert (settings.pre_resize_longest_edge, settings.size) == (64, (32, 32))
    assert handler.settings_for(_ctx({"do_rescale": False})).do_rescale is False


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sise": 3}, r"unknown key image\.sise; accepted: .*'size'"),
        ({"max_pixels": "big"}, r"image\.max_pixels: .*valid integer"),
        ({"max_pixels": 0}, r"image\.max_pixels"),
        ({"rescale_factor": "x"}, r"image\.rescale_factor: .*valid number"),
        ({"rescale_factor": 0}, r"image\.rescale_factor"),
        ({"do_rescale": "false"}, r"image\.do_rescale: .*valid boolean"),
        ({"size": {"shortest": 3}}, r"image\.size: .*shortest_edge"),
        ({"image_std": [0.5, 0, 0.5]}, r"image\.image_std: must be non-zero"),
        ({"do_resize": False}, r"image\.do_resize: mmcore-image always resizes"),
        ({"size": (64, 64)}, "exceeds the vision encoder"),
        ({"resize_mode": "zoom"}, "resize_mode"),
        ({"resample": "cubic"}, "resample"),
        ({"do_normalize": True}, "image_mean"),
        ({"fill": (0, 0, 300)}, "fill"),
    ],
)
def test_bad_settings_raise_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        ImageHandler().preprocess(Image.new("RGB", (4, 4)), _ctx(settings))


def test_unsupported_encoder_input_raises_config_error():
    with pytest.raises(ConfigError, match="int64"):
        ImageHandler().preprocess(Image.new("RGB", (4, 4)), _ctx(spec=TensorSpec(np.dtype(np.int64), (1, 3, 8, 8))))
    with pytest.raises(ConfigError, match="RGB images"):
        ImageHandler().preprocess(Image.new("RGB", (4, 4)), _ctx(spec=TensorSpec(np.dtype(np.float32), (1, 1, 8, 8))))


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_SOURCES: dict[str, tuple[Any, dict[str, Any], str]] = {
    "bomb-header-over-pillow-limit": (png_claiming_size(50_000, 50_000), {}, "too large"),
    "bomb-header-over-max-pixels": (png_claiming_size(9_000, 9_000), {}, "decompression-bomb"),
    "max-pixels-setting": (png_bytes(Image.new("RGB", (100, 100))), {"max_pixels": 5_000}, "above the limit of 5000"),
    "max-pixels-array": (np.zeros((100, 100, 3), np.uint8), {"max_pixels": 5_000}, "above the limit"),
    "truncated-jpeg": (_truncated(jpeg_bytes(photo_like(64, 64))), {}, "truncated"),
    "truncated-png": (_truncated(png_bytes(photo_like(64, 64))), {}, "truncated"),
    "not-an-image": (b"this is not an image, just some text bytes" * 4, {}, "not a readable image"),
    "empty-bytes": (b"", {}, "empty"),
    "zero-size-array": (np.zeros((0, 10, 3), np.uint8), {}, "empty"),
    "int32-array": (np.zeros((10, 10, 3), np.int32), {}, "unsupported pixel dtype int32"),
    "two-channel-array": (np.zeros((10, 10, 2), np.uint8), {}, "channel axis"),
    "five-dim-array": (np.zeros((1, 1, 3, 4, 4), np.uint8), {}, r"\[H, W\]"),
    "float-out-of-range": (np.full((4, 4, 3), 2.0, np.float32), {}, r"in \[0, 1\]"),
    "nan-pixels": (np.full((4, 4, 3), np.nan, np.float32), {}, "finite"),
    "url": ("https://example.com/cat.jpg", {}, "download the image first"),
    "missing-file": ("/nonexistent/cat.jpg", {}, "does not exist"),
    "text-file-object": (io.StringIO("abc"), {}, "binary mode"),
    "unknown-source": (object(), {}, "cannot read an image"),
}


@pytest.mark.parametrize("name", list(BAD_SOURCES))
def test_unusable_inputs_raise_invalid_input_error_naming_the_input(name):
    source, settings, reason = BAD_SOURCES[name]
    with pytest.raises(InvalidInputError, match=reason) as info:
        ImageHandler().preprocess(ImageInput(source), _ctx(settings, index=3))
    assert str(info.value).startswith("input 3 (image")
    assert not re.search(r"0x[0-9a-fA-F]{6,}", str(info.value))  # no object addresses: the same text every run


def test_url_on_the_command_line_is_refused():
    with pytest.raises(InvalidInputError, match="URLs are not fetched"):
        ImageHandler().parse_cli("http://example.com/a.png")


def test_zero_size_pil_image_is_refused():
    with pytest.raises(InvalidInputError, match="empty"):
        ImageHandler().preprocess(Image.new("RGB", (0, 5)), _ctx())


# ----------------------------------------------------------------------------- end to end vs C++


ENCODERS = {
    "uint8-chw": VisionEncoderSpec(dtype="uint8", rank=3, height=32, width=24),
    "float32-nchw": VisionEncoderSpec(dtype="float32", rank=4),
    "float32-chw": VisionEncoderSpec(dtype="float32", rank=3, height=24, width=32),
    "bfloat16-nchw": VisionEncoderSpec(dtype="bfloat16", rank=4),
}


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_requests_with_images_match_cpp(encoder, make_spec, program_path, tokenizer_dir, plugin_manager, cpp, tmp_path):
    plugin_manager.register(mmcore_image, name="image")
    vision = ENCODERS[encoder]
    pte = program_path(make_spec(vision=vision))
    settings = {} if vision.dtype == "uint8" else {"image_mean": 0.5, "image_std": 0.5}
    ours = MultimodalRunner(pte, tokenizer_dir, plugin_manager=plugin_manager, modality_settings={"image": settings})
    reference = cpp.multimodal(pte)

    photo = photo_like(61, 47, seed=1)
    path = tmp_path / "second.jpg"
    path.write_bytes(jpeg_bytes(photo_like(80, 50, seed=2)))
    # What the C++ runner is fed: the same preprocessing, as a CHW uint8 or float32 tensor.
    dtype = np.dtype(np.uint8 if vision.dtype == "uint8" else np.float32)  # the C++ converts float32 to bfloat16
    reference_pixels = ImagePreprocessor(
        PreprocessSettings.from_mapping(settings, TensorSpec(dtype, (3, vision.height, vision.width)))
    )
    torch = pytest.importorskip("torch")  # ExecuTorch's C++ runner binding takes torch tensors
    first, second = torch.from_numpy(reference_pixels(photo)), torch.from_numpy(reference_pixels(path))

    requests = [
        (["the quick brown fox", ImageInput(photo)], [("text", "the quick brown fox"), ("image", first)]),
        ([photo, "jumps over"], [("image", first), ("text", "jumps over")]),
        (
            ["the quick", ImageInput(photo), "brown fox", ImageInput(str(path)), "jumps"],
            [("text", "the quick"), ("image", first), ("text", "brown fox"), ("image", second), ("text", "jumps")],
        ),
    ]
    for ours_inputs, cpp_inputs in requests:
        ours.reset()
        reference.reset()
        got = ours.generate(ours_inputs, GREEDY).tokens
        assert got == cpp.generate(reference, cpp.inputs(cpp_inputs), 12), (encoder, cpp_inputs[0][0])
        assert len(set(got)) > 1
