"""load_image (every input form and error), resize_shortest_edge (detectron2 semantics), pad_to_multiple."""
import numpy as np
import pytest
import torch
from PIL import Image

from ebseg_lite.io.images import load_image, pad_to_multiple, resize_shortest_edge, shortest_edge_size
from ebseg_lite.shapes import check_shape


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)  # (H, W, 3)


def chw(a):
    return torch.from_numpy(a).permute(2, 0, 1)


# ---- accepted inputs ---------------------------------------------------------------------------

def test_path_str_pathlib_pil_numpy_tensor_agree(rgb, tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(rgb).save(p)
    want = chw(rgb)
    for src in (str(p), p, Image.fromarray(rgb), rgb, chw(rgb).clone()):
        got = load_image(src)
        check_shape(got, (3, 6, 9), "loaded")
        assert got.dtype == torch.uint8
        assert torch.equal(got, want)


def test_tensor_input_is_copied(rgb):
    t = chw(rgb).clone()
    out = load_image(t)
    out[:] = 0
    assert t.sum() > 0


def test_grayscale_file_and_array_replicated(tmp_path):
    g = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10  # (H, W)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    for src in (tmp_path / "g.png", g, g[..., None], torch.from_numpy(g), torch.from_numpy(g)[None]):
        out = load_image(src)
        check_shape(out, (3, 4, 5))
        for c in range(3):
            assert torch.equal(out[c], torch.from_numpy(g))


def test_one_bit_image():
    im = Image.new("1", (3, 2), 1)
    assert load_image(im).eq(255).all()


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((1, 3, 4), dtype=np.uint8)
    a[0, :, :3] = (200, 40, 0)
    a[0, :, 3] = (0, 255, 128)  # transparent, opaque, half
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")[:, 0].T  # (3 pixels, 3 channels)
    half = [(v * 128 + 255 * 127 + 127) // 255 for v in (200, 40, 0)]
    assert out.tolist() == [[255, 255, 255], [200, 40, 0], half]
    assert torch.equal(load_image(a), load_image(tmp_path / "a.png"))


def test_la_image_composited():
    im = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), "LA")
    assert load_image(im)[:, 0].T.tolist() == [[255] * 3, [10] * 3]


def test_palette_image(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([0, 0, 0, 250, 20, 30, 10, 200, 90] + [0] * 759)
    im.putdata([0, 1, 2, 1, 1, 1, 2, 0])
    im.save(tmp_path / "p.png")
    want = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(load_image(tmp_path / "p.png"), want)
    im.info["transparency"] = 0  # index 0 transparent -> white
    out = load_image(im)
    assert out[:, 0, 0].tolist() == [255, 255, 255] and out[:, 0, 1].tolist() == [250, 20, 30]


def test_16bit_png_scaled_by_full_range(tmp_path):
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    for src in (tmp_path / "g16.png", a, a.astype(">u2")):
        out = load_image(src)
        assert out[0, 0].tolist() == [0, 1, 128, 255]
        assert torch.equal(out[0], out[2])


def test_32bit_int_mode():
    assert load_image(Image.fromarray(np.array([[0, 65535]], dtype=np.int32)))[0, 0].tolist() == [0, 255]
    with pytest.raises(ValueError, match="16-bit"):
        load_image(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)))


def test_jpeg_file(rgb, tmp_path):
    smooth = np.full((32, 48, 3), (120, 60, 200), dtype=np.uint8)
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=95)
    out = load_image(tmp_path / "x.jpg")
    check_shape(out, (3, 32, 48))
    assert (out.int() - chw(smooth).int()).abs().max() <= 4


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (30, 20), (0, 128, 0))  # W=30, H=20
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif)
    check_shape(load_image(tmp_path / "rot.jpg"), (3, 30, 20))
    check_shape(load_image(Image.open(tmp_path / "rot.jpg")), (3, 30, 20))


def test_cmyk_converted():
    im = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert load_image(im)[:, 0, 0].tolist() == list(im.convert("RGB").getpixel((0, 0)))


def test_float_in_unit_range_converted_else_rejected():
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert load_image(f)[0, 0].tolist() == [0, 128, 255]
    assert load_image(torch.from_numpy(f)[None].expand(3, 1, 3).half())[1, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(f * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(np.array([[np.nan, 0.5]]))


# ---- errors ------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(p)


def test_corrupt_and_truncated_files(rgb, tmp_path):
    bad = tmp_path / "garbage.png"
    bad.write_bytes(b"this is not an image \x00\x01\x02" * 10)
    with pytest.raises(ValueError, match="garbage.png"):
        load_image(bad)
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_directory_rejected(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("bad", [
    np.zeros((4, 5, 5), np.uint8),          # 5 channels
    np.zeros((3, 4, 5), np.uint8),          # channels-first numpy
    np.zeros((2, 4, 5, 3), np.uint8),       # a batch
    np.zeros((4, 5, 3), np.int64),          # wrong dtype
    np.zeros((4, 5), bool),
    torch.zeros(5, 6, 3, dtype=torch.uint8),  # channels-last tensor
    torch.zeros(1, 3, 4, 5, dtype=torch.uint8),
])
def test_wrong_shape_or_dtype_lists_accepted_forms(bad):
    with pytest.raises(ValueError, match="accepted inputs"):
        load_image(bad)


def test_channel_order_hints():
    with pytest.raises(ValueError, match="transpose"):
        load_image(np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="permute"):
        load_image(torch.zeros(5, 6, 3, dtype=torch.uint8))


def test_unsupported_type_and_empty_images():
    with pytest.raises(ValueError, match="accepted inputs"):
        load_image([[1, 2], [3, 4]])
    for empty in (np.zeros((0, 5, 3), np.uint8), torch.zeros(3, 4, 0, dtype=torch.uint8), Image.new("RGB", (0, 3))):
        with pytest.raises(ValueError, match="empty"):
            load_image(empty)


# ---- resize and pad ----------------------------------------------------------------------------

@pytest.mark.parametrize("hw, want", [
    ((480, 640), (640, 853)),     # 640 * 640 / 480 = 853.33
    ((640, 480), (853, 640)),
    ((100, 1000), (256, 2560)),   # 640 x 6400 would exceed 2560: scale by 2560 / 6400 instead
    ((5, 7), (640, 896)),
    ((33, 17), (1242, 640)),      # 33 * 640 / 17 = 1242.35
    ((640, 640), (640, 640)),
])
def test_shortest_edge_size(hw, want):
    assert shortest_edge_size(*hw) == want


def test_shortest_edge_size_no_cap_and_custom():
    assert shortest_edge_size(100, 1000, max_size=None) == (640, 6400)
    assert shortest_edge_size(10, 30, short=4, max_size=9) == (3, 9)


def test_resize_tiny_and_odd_images():
    tiny = torch.full((3, 5, 7), 77, dtype=torch.uint8)
    out, size = resize_shortest_edge(tiny)
    assert size == (640, 896)
    check_shape(out, (3, 640, 896))
    assert out.dtype == torch.uint8 and out.eq(77).all()  # bilinear keeps a constant image constant
    odd = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 33, 17), dtype=np.uint8))
    out, size = resize_shortest_edge(odd, short=21)
    assert size == (41, 21)  # 33 * 21 / 17 = 40.76
    ref = Image.fromarray(odd.permute(1, 2, 0).numpy()).resize((21, 41), Image.Resampling.BILINEAR)
    assert torch.equal(out, torch.from_numpy(np.asarray(ref).copy()).permute(2, 0, 1))


def test_resize_max_size_cap_and_other_inputs():
    wide = np.zeros((10, 200, 3), np.uint8)
    out, size = resize_shortest_edge(wide, short=64, max_size=400)
    assert size == (20, 400) and out.shape == (3, 20, 400)


def test_resize_unchanged_when_size_right():
    x = torch.randint(0, 256, (3, 640, 700), dtype=torch.uint8)
    out, size = resize_shortest_edge(x)
    assert size == (640, 700) and out is x


def test_pad_to_multiple():
    x = torch.randn(2, 3, 33, 64)  # (B, C, H, W)
    out, size = pad_to_multiple(x, 32, value=-1.0)
    check_shape(out, (2, 3, 64, 64))
    assert size == (33, 64)
    assert torch.equal(out[..., :33, :64], x)
    assert out[..., 33:, :].eq(-1.0).all()
    y = torch.randn(1, 1, 5, 7)
    out, size = pad_to_multiple(y, 4)
    assert out.shape == (1, 1, 8, 8) and size == (5, 7) and out[..., 5:, :].eq(0).all() and out[..., 7:].eq(0).all()
    z = torch.randn(1, 2, 64, 32)
    assert pad_to_multiple(z)[0] is z


def test_pad_to_multiple_errors():
    with pytest.raises(ValueError, match="batch"):
        pad_to_multiple(torch.randn(3, 5, 5))
    with pytest.raises(ValueError, match="positive"):
        pad_to_multiple(torch.randn(1, 3, 5, 5), 0)
