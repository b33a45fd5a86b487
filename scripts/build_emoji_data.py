#!/usr/bin/env python3
"""Build the emoji text-to-image data set from five open Iconify emoji sets.

The script that made the emoji training archive (models/README.md, "Data"), kept here so a
clone of the repository can rebuild it: pip install resvg-py==0.5.0 pillow.

Inputs: the npm packages below, unpacked (`npm pack NAME@VERSION` then `tar xzf` into a folder
named like `iconify-json-noto-1.2.9`), each holding package/icons.json. Needs resvg-py (0.5.0,
the resvg renderer) and pillow.

Output: <out>/emoji/train/<style>/<name>.png (RGBA, SIZE x SIZE, transparent background) and
<out>/emoji/train/metadata.jsonl, one JSON object per image with the keys
  file_name  path relative to train/ ("noto/cat-face.png")
  text       the caption: the emoji's CLDR-style name with hyphens as spaces ("cat face")
  name       the Iconify icon name ("cat-face")
  style      the set it comes from ("noto", "twemoji", "fluent", "fluent-flat", "emojione")
  aliases    other names the set gives the same icon, as captions (may be empty)
  license    the set's license
(the Hugging Face "imagefolder + metadata.jsonl" convention: file_name and text columns).

Usage: build.py --packages DIR --out DIR [--size 128] [--exclude names.txt]
"""
import argparse, io, json, os, sys

SETS = {  # style: (npm package, version, license)
    "noto": ("@iconify-json/noto", "1.2.9", "Apache-2.0"),
    "twemoji": ("@iconify-json/twemoji", "1.2.5", "CC-BY-4.0"),
    "fluent": ("@iconify-json/fluent-emoji", "1.2.7", "MIT"),
    "fluent-flat": ("@iconify-json/fluent-emoji-flat", "1.2.6", "MIT"),
    "emojione": ("@iconify-json/emojione", "1.2.3", "CC-BY-4.0"),
}


def folder_for(packages: str, pkg: str, version: str) -> str:
    base = pkg.lstrip("@").replace("/", "-") + "-" + version
    return os.path.join(packages, base, "package", "icons.json")


def render(icon: dict, default_w: int, default_h: int, size: int):
    import resvg_py
    from PIL import Image
    w, h = icon.get("width", default_w), icon.get("height", default_h)
    left, top = icon.get("left", 0), icon.get("top", 0)
    side = max(w, h)  # centre a non-square icon in a square canvas instead of stretching it
    left, top, w, h = left - (side - w) / 2, top - (side - h) / 2, side, side
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{w}" height="{h}" '
           f'viewBox="{left} {top} {w} {h}">{icon["body"]}</svg>')
    png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size)
    return Image.open(io.BytesIO(png)).convert("RGBA")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--exclude", help="file of icon names (one a line) to leave out of every style")
    a = ap.parse_args()
    exclude = set()
    if a.exclude:
        exclude = {l.strip() for l in open(a.exclude) if l.strip()}
    root = os.path.join(a.out, "emoji", "train")
    rows = []
    for style, (pkg, version, lic) in SETS.items():
        d = json.load(open(folder_for(a.packages, pkg, version)))
        aliases: dict[str, list[str]] = {}
        for alias, spec in d.get("aliases", {}).items():
            if set(spec) == {"parent"}:  # a pure rename; transformed aliases are skipped
                aliases.setdefault(spec["parent"], []).append(alias)
        os.makedirs(os.path.join(root, style), exist_ok=True)
        for name in sorted(d["icons"]):
            names = {name, *aliases.get(name, [])}
            if names & exclude:
                continue
            im = render(d["icons"][name], d.get("width", 16), d.get("height", 16), a.size)
            rel = f"{style}/{name}.png"
            im.save(os.path.join(root, rel), optimize=True)
            rows.append({"file_name": rel, "text": name.replace("-", " "), "name": name,
                         "style": style, "aliases": [x.replace("-", " ") for x in sorted(aliases.get(name, []))],
                         "license": lic})
        print(style, sum(r["style"] == style for r in rows), file=sys.stderr)
    with open(os.path.join(root, "metadata.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(len(rows), "images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
