"""Line plots of training and ability curves as PNG: matplotlib when installed, else Pillow.

    line_plot({"run-a caption": [(tokens, score), ...], ...}, Path("curves.png"),
              xlabel="tokens seen", ylabel="score", ylim=(0, 1))
"""

from __future__ import annotations

from pathlib import Path

from anygpt.files import atomic_path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def line_plot(series: dict[str, list[tuple[float, float]]], path: Path, *, xlabel: str, ylabel: str,
              title: str = "", ylim: tuple[float, float] | None = None) -> Path:
    """One line (with markers) per named series of (x, y) points -> PNG at `path` (written whole).
    ylim: the y range (default: the data's)."""
    path = Path(path)
    with atomic_path(path) as tmp:  # makes the parent folder
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            _pillow_plot(series, tmp, xlabel, ylabel, ylim)
            return path
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, pts in series.items():
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
    return path


def _pillow_plot(series: dict[str, list[tuple[float, float]]], path: Path, xlabel: str, ylabel: str,
                 ylim: tuple[float, float] | None) -> None:
    from PIL import Image, ImageDraw

    w, h, m = 700, 450, 50
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((m, m, w - m, h - m), outline="black")
    xs = [x for pts in series.values() for x, _ in pts] or [1.0]
    ys = [y for pts in series.values() for _, y in pts] or [0.0, 1.0]
    xmax = max(xs) or 1.0
    lo, hi = ylim if ylim is not None else (min(ys), max(ys))
    span = (hi - lo) or 1.0
    for i, (name, pts) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        xy = [(m + (w - 2 * m) * x / xmax, h - m - (h - 2 * m) * (y - lo) / span) for x, y in pts]
        if len(xy) > 1:
            d.line(xy, fill=c, width=2)
        for x, y in xy:
            d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=c)
        d.text((m + 10, m + 10 + 14 * i), name, fill=c)
    d.text((w // 2 - 60, h - m + 15), f"{xlabel} (max {xmax:,.0f})", fill="black")
    d.text((5, m - 20), f"{ylabel} {lo:.3g}..{hi:.3g}", fill="black")
    im.save(path, format="PNG")
