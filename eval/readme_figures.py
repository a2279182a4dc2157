"""Make README's pictures from the outputs of a run: labelled original | reconstruction grids and
prompt -> sample grids with the prompt written under each image.

    python eval/readme_figures.py --reconstructions runs/gpu_shapes/tokenizer/reconstructions.png \
        --samples runs/gpu_shapes/samples_latent --samples runs/gpu_shapes/samples_shared --out docs

--reconstructions: a PNG written by the tokenizer trainer or eval/recon.py (originals on the top
row, reconstructions below). --samples: eval/sample.py output folders (samples.json + PNGs). Each
figure is saved as docs/<name>.png, small enough to commit (a few tens of KB).
"""

import argparse
import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def _font():
    return ImageFont.load_default()


def labelled_reconstructions(grid_png: Path, out: Path, scale: int = 2) -> Path:
    """Add 'original' / 'reconstruction' labels to the left of a two-row comparison grid."""
    grid = Image.open(grid_png).convert("RGB")
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    margin = 110
    canvas = Image.new("RGB", (grid.width + margin, grid.height), WHITE)
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(("original", "reconstruction")):
        draw.text((6, grid.height * (2 * row + 1) // 4 - 6), label, fill=BLACK, font=_font())
    canvas.save(out, optimize=True)
    return out


def prompt_grid(samples_dir: Path, out: Path, columns: int = 4, scale: int = 2,
                max_images: int = 12, title: str = "") -> Path:
    """Each sample enlarged `scale` times with its prompt wrapped underneath."""
    record = json.loads((samples_dir / "samples.json").read_text())
    entries = record["images"][:max_images]
    if not entries:
        raise ValueError(f"{samples_dir}/samples.json lists no images")
    first = Image.open(samples_dir / entries[0]["file"])
    side = first.width * scale
    cell_w, text_h, title_h = max(side, 170), 58, 18 if title else 0
    rows = (len(entries) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * cell_w, title_h + rows * (side + text_h)), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=BLACK, font=_font())
    for k, entry in enumerate(entries):
        x = (k % columns) * cell_w
        y = title_h + (k // columns) * (side + text_h)
        image = Image.open(samples_dir / entry["file"]).convert("RGB")
        canvas.paste(image.resize((side, side), Image.NEAREST), (x + (cell_w - side) // 2, y))
        prompt = entry["prompt"] or f"class {entry['class_id']}"
        for i, line in enumerate(textwrap.wrap(prompt, width=cell_w // 6)[:4]):
            draw.text((x + 3, y + side + 2 + 13 * i), line, fill=BLACK, font=_font())
    canvas.save(out, optimize=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--reconstructions", type=Path, action="append", default=[],
                        help="comparison grid PNG (repeatable); saved as reconstructions[_N].png")
    parser.add_argument("--samples", type=Path, action="append", default=[],
                        help="eval/sample.py folder (repeatable); saved as samples_<folder>.png")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    for path in [*args.reconstructions, *args.samples]:
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, png in enumerate(args.reconstructions):
        name = "reconstructions.png" if i == 0 else f"reconstructions_{i}.png"
        written.append(labelled_reconstructions(png, args.out / name))
    for folder in args.samples:
        written.append(prompt_grid(folder, args.out / f"{folder.name}.png",
                                   title=f"{folder.name}: held-out prompts -> samples"))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return written


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
