"""The emoji dataset: labels parsed from emoji-test.txt, pictures rendered from Noto Color Emoji. Rendering
tests use a small synthetic emoji-test.txt, so they take a second or two and do not depend on the Unicode
version installed; they need the font and skip (saying why) without it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ganforge.data import emoji as E
from ganforge.registry import GanforgeError

SYNTHETIC = """\
# emoji-test.txt
# Version: 15.0

# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
1F603                                                  ; fully-qualified     # 😃 E0.6 grinning face with big eyes
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face
1F636 200D 1F32B                                       ; minimally-qualified # 😶‍🌫 E13.1 face in clouds
1F636 200D 1F32B FE0F                                  ; fully-qualified     # 😶‍🌫️ E13.1 face in clouds

# group: People & Body

# subgroup: hand-fingers-open
1F44B                                                  ; fully-qualified     # 👋 E0.6 waving hand
1F44B 1F3FB                                            ; fully-qualified     # 👋🏻 E1.0 waving hand: light skin tone
1F44B 1F3FF                                            ; fully-qualified     # 👋🏿 E1.0 waving hand: dark skin tone
1F468 200D 1F469 200D 1F467                            ; fully-qualified     # 👨‍👩‍👧 E2.0 family: man, woman, girl
1F468 1F3FD 200D 1F9B0                                 ; fully-qualified     # 👨🏽‍🦰 E11.0 man: medium skin tone, red hair

# group: Component

# subgroup: skin-tone
1F3FB                                                  ; component           # 🏻 E1.0 light skin tone
1F9B0                                                  ; fully-qualified     # 🦰 E11.0 red hair

# group: Animals & Nature

# subgroup: animal-mammal
1F435                                                  ; fully-qualified     # 🐵 E0.6 monkey face
1F436                                                  ; fully-qualified     # 🐶 E0.6 dog face
1FAFF                                                  ; fully-qualified     # (unassigned: the font has no glyph)

# group: Flags

# subgroup: country-flag
1F1EB 1F1F7                                            ; fully-qualified     # 🇫🇷 E0.6 flag: France
1F600 200D 1F600                                       ; fully-qualified     # (no such sequence: drawn as two faces)

#EOF
"""

GROUPED = [
    ("\U0001F600", "Smileys & Emotion"), ("\U0001F603", "Smileys & Emotion"),
    ("\u263A\uFE0F", "Smileys & Emotion"), ("\U0001F636\u200D\U0001F32B\uFE0F", "Smileys & Emotion"),
    ("\U0001F44B", "People & Body"), ("\U0001F468\u200D\U0001F469\u200D\U0001F467", "People & Body"),
    ("\U0001F435", "Animals & Nature"), ("\U0001F436", "Animals & Nature"), ("\U0001FAFF", "Animals & Nature"),
    ("\U0001F1EB\U0001F1F7", "Flags"), ("\U0001F600\u200D\U0001F600", "Flags"),
]


@pytest.fixture
def emoji_test(tmp_path, monkeypatch):
    path = tmp_path / "emoji-test.txt"
    path.write_text(SYNTHETIC, encoding="utf-8")
    monkeypatch.setenv(E.EMOJI_TEST_ENV, str(path))
    monkeypatch.delenv(E.FONT_ENV, raising=False)
    return path


@pytest.fixture
def font(emoji_test):
    try:
        return E.find_font()
    except GanforgeError as e:
        pytest.skip(f"Noto Color Emoji font not installed (apt-get install fonts-noto-color-emoji): {e}")


def test_read_emoji_groups(emoji_test):
    # fully-qualified only, file order; Component group and skin-tone variants left out
    assert E.read_emoji_groups(emoji_test) == GROUPED


def test_slugs_and_names():
    assert E.group_slug("Smileys & Emotion") == "smileys-and-emotion"
    assert E.group_slug("Travel & Places") == "travel-and-places"
    assert E.codepoint_name("\U0001F1EB\U0001F1F7") == "1f1eb-1f1f7"


def test_find_emoji_test_override(tmp_path, monkeypatch):
    monkeypatch.setenv(E.EMOJI_TEST_ENV, str(tmp_path / "missing.txt"))
    assert E.find_emoji_test() is None


def test_missing_font_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "NotoColorEmoji.ttf"
    monkeypatch.setenv(E.FONT_ENV, str(missing))
    with pytest.raises(GanforgeError) as err:
        E.find_font()
    msg = str(err.value)
    assert str(missing) in msg and E.FONT_ENV in msg
    assert "apt-get install fonts-noto-color-emoji" in msg
    with pytest.raises(GanforgeError, match="fonts-noto-color-emoji"):
        E.render_emoji_folder(tmp_path / "out", size=16)
    assert not any(tmp_path.glob("*out*"))


def test_missing_font_error_lists_defaults(monkeypatch):
    monkeypatch.delenv(E.FONT_ENV, raising=False)
    monkeypatch.setattr(E, "FONT_PATHS", ("/nonexistent/a/NotoColorEmoji.ttf", "/nonexistent/b/x.ttf"))
    with pytest.raises(GanforgeError) as err:
        E.find_font()
    assert "/nonexistent/a/NotoColorEmoji.ttf" in str(err.value) and "/nonexistent/b/x.ttf" in str(err.value)


def _check_images(folder, size):
    from PIL import Image

    files = sorted(folder.rglob("*.png"))
    for f in files:
        assert f.parent.parent == folder   # out/<group-slug>/<codepoints>.png
        with Image.open(f) as img:
            assert img.mode == "RGB" and img.size == (size, size), f
            arr = np.asarray(img, dtype=np.float32)
        assert arr.std() > 20, f"{f} looks blank"
    return files


def test_render_folder(tmp_path, font):
    out = tmp_path / "emoji"
    info = E.render_emoji_folder(out, size=24)
    # the unassigned code point and the bogus ZWJ sequence have no glyph: skipped, not drawn as blanks/parts
    assert info["skipped"] == 2
    assert info["images"] == len(GROUPED) - 2
    assert info["groups"] == {"Smileys & Emotion": 4, "People & Body": 2, "Animals & Nature": 2, "Flags": 1}
    assert info["folder"] == str(out)
    assert {p.name for p in out.iterdir() if p.is_dir()} == {
        "smileys-and-emotion", "people-and-body", "animals-and-nature", "flags"}
    assert (out / "flags" / "1f1eb-1f1f7.png").is_file()
    assert len(_check_images(out, 24)) == info["images"]
    assert [p.name for p in tmp_path.iterdir()] == ["emoji", "emoji-test.txt"]  # no temp folders left


def test_render_limit_spans_groups(tmp_path, font):
    out = tmp_path / "few"
    info = E.render_emoji_folder(out, size=16, limit=5)
    assert info["images"] == 5
    assert set(info["groups"]) == {"Smileys & Emotion", "People & Body", "Animals & Nature", "Flags"}
    _check_images(out, 16)


def test_render_limit_real_labels(tmp_path, monkeypatch):
    """limit=20 with the installed emoji-test.txt (unicode-data) and font."""
    monkeypatch.delenv(E.EMOJI_TEST_ENV, raising=False)
    monkeypatch.delenv(E.FONT_ENV, raising=False)
    if E.find_emoji_test() is None:
        pytest.skip("emoji-test.txt not installed (apt-get install unicode-data)")
    try:
        E.find_font()
    except GanforgeError as e:
        pytest.skip(f"Noto Color Emoji font not installed: {e}")
    info = E.render_emoji_folder(tmp_path / "e", size=32, limit=20)
    assert info["images"] == 20 and len(info["groups"]) >= 8
    assert len(_check_images(tmp_path / "e", 32)) == 20


def test_interrupted_render_leaves_nothing(tmp_path, font, monkeypatch):
    out = tmp_path / "emoji"
    calls = []
    real = E._Renderer.render

    def flaky(self, emoji):
        calls.append(emoji)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, emoji)

    monkeypatch.setattr(E._Renderer, "render", flaky)
    with pytest.raises(KeyboardInterrupt):
        E.render_emoji_folder(out, size=16)
    assert [p.name for p in tmp_path.iterdir()] == ["emoji-test.txt"]


def test_ensure_emoji_caches(tmp_path, font, monkeypatch):
    cache = tmp_path / "cache"
    folder = E.ensure_emoji(cache, size=16)
    assert folder == cache / "emoji-16"
    marker = json.loads((folder / E.MARKER).read_text())
    assert marker["images"] == len(GROUPED) - 2 and marker["size"] == 16
    # complete: reused without rendering again
    with monkeypatch.context() as m:
        m.setattr(E, "render_emoji_folder", lambda *a, **k: pytest.fail("rendered twice"))
        assert E.ensure_emoji(cache, size=16) == folder
    # no marker (an old or foreign folder): rendered again, replacing it
    (folder / E.MARKER).unlink()
    (folder / "stray.txt").write_text("x")
    assert E.ensure_emoji(cache, size=16) == folder
    assert (folder / E.MARKER).is_file() and not (folder / "stray.txt").exists()
    assert [p.name for p in cache.iterdir()] == ["emoji-16"]
