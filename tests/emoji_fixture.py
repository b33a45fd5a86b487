"""A tiny captioned RGBA image folder, drawn on the fly (no binary fixture, no ../shared):
coloured shapes on a transparent background in two "styles" (filled and outlined), captioned
"<colour> <shape>", in the Hugging Face imagefolder layout the emoji data uses."""

from __future__ import annotations

import json
import os
import tarfile

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60),
           "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
STYLES = ("filled", "outline")


def _draw(colour, shape: str, style: str, size: int) -> Image.Image:
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    m = size // 6
    box = (m, m, size - m, size - m)
    kw = {"fill": colour + (255,)} if style == "filled" else {"outline": colour + (255,),
                                                              "width": max(2, size // 12)}
    if shape == "circle":
        d.ellipse(box, **kw)
    elif shape == "square":
        d.rectangle(box, **kw)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], **kw)
    return im


def make_captioned_folder(root: str, size: int = 32) -> str:
    """Write ``root/train/<style>/<name>.png`` + ``root/train/metadata.jsonl``; returns root."""
    rows = []
    for style in STYLES:
        os.makedirs(os.path.join(root, "train", style), exist_ok=True)
        for cname, rgb in COLOURS.items():
            for shape in SHAPES:
                name = f"{cname}-{shape}"
                _draw(rgb, shape, style, size).save(os.path.join(root, "train", style,
                                                                 f"{name}.png"))
                rows.append({"file_name": f"{style}/{name}.png", "text": f"{cname} {shape}",
                             "name": name, "style": style,
                             "aliases": [f"{shape} in {cname}"] if shape == "circle" else []})
    with open(os.path.join(root, "train", "metadata.jsonl"), "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return root


def make_captioned_archive(root: str, size: int = 32) -> str:
    """The same folder as a .tar.gz with one leading folder (as the emoji archive has)."""
    folder = make_captioned_folder(os.path.join(root, "shapes"), size)
    path = os.path.join(root, "shapes.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="shapes")
    return path
