"""Make README's pictures from the outputs of a run: labelled original | reconstruction grids and
prompt -> sample grids with the prompt written under each image.

    python eval/readme_figures.py reconstructions=[runs/gpu_shapes/tokenizer/reconstructions.png] \
        samples=[runs/gpu_shapes/samples_latent,runs/gpu_shapes/samples_shared] out=docs

reconstructions: PNGs written by the tokenizer trainer or eval/recon.py (originals on the top
row, reconstructions below). samples: eval/sample.py output folders (samples.json + PNGs). Each
figure is saved as <out>/<name>.png, small enough to commit (a few tens of KB).
"""

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from unimodal.cli import parse_config
from unimodal.config import ConfigError

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


@dataclass
class ReadmeFiguresConfig:
    reconstructions: list[str] = field(default_factory=list)  # grid PNGs -> reconstructions[_N].png
    samples: list[str] = field(default_factory=list)  # eval/sample.py folders -> <folder name>.png
    out: str = "docs"                     # where the figures go

    def validate(self) -> None:
        if not self.reconstructions and not self.samples:
            raise ConfigError("nothing to draw: give reconstructions=[PNG,...] and/or "
                              "samples=[FOLDER,...]")
        for path in [*self.reconstructions, *self.samples]:
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: not found")


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
    args = parse_config(ReadmeFiguresConfig, argv, __doc__, __file__)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, png in enumerate(map(Path, args.reconstructions)):
        name = "reconstructions.png" if i == 0 else f"reconstructions_{i}.png"
        written.append(labelled_reconstructions(png, out / name))
    for folder in map(Path, args.samples):
        written.append(prompt_grid(folder, out / f"{folder.name}.png",
                                   title=f"{folder.name}: held-out prompts -> samples"))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return written


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
