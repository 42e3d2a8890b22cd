"""The 2-D illustration: from one start, SGD and SAM end in a sharp minimum, GSAM in a flat one.

The paper's Figure 3 makes this point on a 2-D loss it does not publish, so this module uses a
loss of our own (illustrative, not the paper's function):

    f(w1, w2) = -1.4 exp(-(w1 - 1)^2 / (2 * 0.38^2)) - 0.6 exp(-(w1 + 1)^2 / (2 * 0.6^2))
                + 0.1 w1^2 + 0.8 exp(0.9 w1) sqrt(w2^2 + 0.22^2)

A valley along w2 = 0 holds a deep, sharp minimum near (0.94, 0) and a shallow, flat one near
(-0.92, 0). Its walls grow steeper towards the sharp side (the exp(0.9 w1) factor), so the
gradient norm falls towards the flat side. From the start (0.8, 2.2), with the same learning rate
0.09 and rho 0.1 (constant: no schedule), SGD and SAM slide down into the sharp minimum. GSAM
(alpha = 1) adds -alpha * g_perp to SAM's direction, a push along the slope towards lower
surrogate gap, and reaches the flat minimum. All three are the package's real optimizers
(`gsam_repro.optim.create_optimizer`). The basin map (`basin_map`) measures how special that
start is: over the plotted frame, GSAM ends flat while SAM ends sharp from very few starts
(docs/reports.md, The toy example, states the share and why the effect is this narrow). It
applies the same update rules to all starts at once (`final_points`), checked against the real
optimizers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gsam_repro.fsio import atomic_path, atomic_write_text, save_figure

START = (0.8, 2.2)
LR = 0.09
RHO = 0.1
ALPHA = 1.0
STEPS = 200
OPTIMIZERS = ("sgd", "sam", "gsam")
# The basin map: a grid of starts over the plotted frame, each classified by where each optimizer
# ends after STEPS steps. An end within END_RADIUS of a minimum ends there (SAM orbits within
# about 1.5 rho of the sharp one); anything else, still travelling or off the frame, is neither.
FRAME_X = (-2.0, 2.0)
FRAME_Y = (-0.7, 2.5)
MAP_SHAPE = (41, 33)  # starts along w1, along w2 (spacing 0.1)
END_RADIUS = 3 * RHO
CLASSES = ("flat", "sharp", "neither")


def loss(w: torch.Tensor) -> torch.Tensor:
    """The toy loss at w (shape (..., 2)); works on batches of points."""
    x, y = w[..., 0], w[..., 1]
    sharp = -1.4 * torch.exp(-((x - 1.0) ** 2) / (2 * 0.38**2))
    flat = -0.6 * torch.exp(-((x + 1.0) ** 2) / (2 * 0.6**2))
    walls = 0.8 * torch.exp(0.9 * x) * torch.sqrt(y**2 + 0.22**2)
    return sharp + flat + 0.1 * x**2 + walls


def gradient(w: np.ndarray) -> np.ndarray:
    """Gradient of the loss at one point, by autograd in float64."""
    point = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(point), point)
    return grad.numpy()


def hessian(w: np.ndarray) -> np.ndarray:
    """The exact 2x2 Hessian at w (autograd, float64)."""
    point = torch.tensor(w, dtype=torch.float64)
    return torch.autograd.functional.hessian(loss, point).numpy()


def max_eigenvalue(w: np.ndarray) -> float:
    """Largest eigenvalue of the 2x2 Hessian at w: the sharpness of the point."""
    return float(np.linalg.eigvalsh(hessian(w)).max())


def surrogate_gap(w: np.ndarray, rho: float = RHO, angles: int = 3600) -> float:
    """h = max over |eps| = rho of f(w + eps) - f(w), on a dense circle of directions.

    The optimizers use eps = rho g / |g|, a first-order guess at this worst case; at a minimum g
    vanishes and its direction is noise, so the table reports the worst case itself, which is
    about rho^2 lambda_max / 2 at a minimum."""
    theta = torch.linspace(0.0, 2 * math.pi, angles + 1, dtype=torch.float64)[:-1]
    centre = torch.tensor(w, dtype=torch.float64)
    ring = centre + rho * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return float(loss(ring).max() - loss(centre))


@functools.cache
def _minima() -> tuple[tuple[str, tuple[float, float]], ...]:
    found = []
    for name, guess in (("sharp", (0.95, 0.0)), ("flat", (-0.9, 0.0))):
        point = np.array(guess, dtype=float)
        for _ in range(50):
            point = point - np.linalg.solve(hessian(point), gradient(point))
        found.append((name, (float(point[0]), float(point[1]))))
    return tuple(found)


def minima() -> dict[str, np.ndarray]:
    """The two minima, found by Newton's method from rough guesses."""
    return {name: np.array(point) for name, point in _minima()}


def trajectory(
    name: str,
    *,
    start: tuple[float, float] = START,
    steps: int = STEPS,
    lr: float = LR,
    rho: float = RHO,
    alpha: float = ALPHA,
) -> np.ndarray:
    """Run one of the package's optimizers on the toy loss; returns the (steps + 1, 2) path."""
    from gsam_repro.optim import create_optimizer

    w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    settings: dict[str, float] = {"lr": lr}
    if name == "sam":
        settings["rho"] = rho
    elif name == "gsam":
        settings.update(rho_max=rho, rho_min=rho, alpha=alpha)
    optimizer = create_optimizer(name, [w], **settings)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(w)
        value.backward()
        return value

    path = [w.detach().numpy().copy()]
    for _ in range(steps):
        optimizer.step(closure)
        path.append(w.detach().numpy().copy())
    return np.array(path)


def _gradients(points: torch.Tensor) -> torch.Tensor:
    """The loss gradient at each of many points (shape (n, 2)), by autograd in float64."""
    points = points.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(points).sum(), points)
    return grad


def final_points(
    name: str,
    starts: np.ndarray,
    *,
    steps: int = STEPS,
    lr: float = LR,
    rho: float = RHO,
    alpha: float = ALPHA,
) -> np.ndarray:
    """Where `name` ends from each of many starts (shape (n, 2)) at once.

    The package's optimizers treat all parameters as one vector (one ||g|| per step), so many
    independent starts cannot share one optimizer; this applies their update rules (no momentum
    or weight decay, constant rho, as in `trajectory`) to every start in one tensor. A test
    checks it against `trajectory`, the package's own optimizers, start by start."""
    from gsam_repro.optim.sam import EPS

    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    w = torch.tensor(np.asarray(starts, dtype=float), dtype=torch.float64)
    for _ in range(steps):
        g = _gradients(w)
        if name == "sgd":
            d = g
        else:
            norm = g.norm(dim=1, keepdim=True)
            g_p = _gradients(w + rho * g / (norm + EPS))
            d = g_p
            if name == "gsam":  # d = g_p - alpha g_perp = (1 + alpha c) g_p - alpha g
                c = (g * g_p).sum(dim=1, keepdim=True) / (g_p.norm(dim=1, keepdim=True) ** 2 + EPS)
                d = (1 + alpha * c) * g_p - alpha * g
        w = w - lr * d
    return w.numpy()


def classify(ends: np.ndarray) -> np.ndarray:
    """'flat', 'sharp' or 'neither' for each end point (shape (n, 2)): the minimum within
    END_RADIUS, if any."""
    ends = np.atleast_2d(ends)
    out = np.full(len(ends), "neither", dtype=object)
    for name, point in minima().items():
        near = np.linalg.norm(ends - point, axis=1) < END_RADIUS  # NaN (diverged): False
        out[near] = name
    return out


@dataclass
class BasinMap:
    """Each optimizer's class ('flat', 'sharp', 'neither') for a grid of starts."""

    xs: np.ndarray  # w1 of the columns
    ys: np.ndarray  # w2 of the rows
    classes: dict[str, np.ndarray]  # optimizer -> (len(ys), len(xs)) array of class names
    steps: int = STEPS

    def shares(self) -> dict[str, float]:
        """The fraction of starts where each optimizer ends flat, and where the illustration
        holds: GSAM ends flat while SAM ends sharp."""
        out = {f"{name}_flat": float(np.mean(c == "flat")) for name, c in self.classes.items()}
        out["gsam_flat_sam_sharp"] = float(np.mean((self.classes["gsam"] == "flat")
                                                   & (self.classes["sam"] == "sharp")))
        return out


def basin_map(shape: tuple[int, int] = MAP_SHAPE, steps: int = STEPS) -> BasinMap:
    """Classify every start of a (w1 x w2) grid over the plotted frame, for each optimizer."""
    xs = np.linspace(*FRAME_X, shape[0])
    ys = np.linspace(*FRAME_Y, shape[1])
    starts = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    classes = {name: classify(final_points(name, starts, steps=steps)).reshape(len(ys), len(xs))
               for name in OPTIMIZERS}
    return BasinMap(xs, ys, classes, steps)


def shares_text(shares: dict[str, float], shape: tuple[int, int] = MAP_SHAPE) -> str:
    """The measured shares in one sentence (figure caption, table file, command output)."""
    return (f"Of {shape[0] * shape[1]} starts on a {shape[0]} x {shape[1]} grid over the frame, "
            f"GSAM ends flat while SAM ends sharp from {100 * shares['gsam_flat_sam_sharp']:.1f} "
            f"%; each ends flat from: SGD {100 * shares['sgd_flat']:.1f} %, SAM "
            f"{100 * shares['sam_flat']:.1f} %, GSAM {100 * shares['gsam_flat']:.1f} %.")


@dataclass
class ToyResult:
    """One optimizer's run: the path and what its end point looks like."""

    optimizer: str
    path: np.ndarray
    loss: float
    surrogate_gap: float
    hessian_max_eig: float
    basin: str

    @property
    def end(self) -> np.ndarray:
        return self.path[-1]


def run_all(steps: int = STEPS) -> list[ToyResult]:
    """SGD, SAM and GSAM from the same start with the same lr and rho."""
    results = []
    for name in OPTIMIZERS:
        path = trajectory(name, steps=steps)
        end = path[-1]
        results.append(
            ToyResult(
                optimizer=name,
                path=path,
                loss=float(loss(torch.tensor(end, dtype=torch.float64))),
                surrogate_gap=surrogate_gap(end),
                hessian_max_eig=max_eigenvalue(end),
                basin=str(classify(end)[0]),
            )
        )
    return results


def table_rows(results: list[ToyResult]) -> list[dict[str, object]]:
    """The end-point table as plain rows (one per optimizer)."""
    return [
        {
            "optimizer": r.optimizer.upper(),
            "w1": round(float(r.end[0]), 4),
            "w2": round(float(r.end[1]), 4),
            "loss": round(r.loss, 4),
            "surrogate_gap": round(r.surrogate_gap, 5),
            "hessian_max_eig": round(r.hessian_max_eig, 3),
            "basin": r.basin,
        }
        for r in results
    ]


def markdown_table(results: list[ToyResult]) -> str:
    """The end-point table in Markdown."""
    head = (
        "| optimizer | final w1 | final w2 | loss | surrogate gap (rho = "
        f"{RHO}) | Hessian max eigenvalue | basin |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---|"]
    for row in table_rows(results):
        lines.append(
            f"| {row['optimizer']} | {row['w1']:.3f} | {row['w2']:.3f} | {row['loss']:.3f} | "
            f"{row['surrogate_gap']:.4f} | {row['hessian_max_eig']:.2f} | {row['basin']} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[ToyResult], out_dir: Path) -> list[Path]:
    """Contour plot of the loss with the three trajectories, as PNG and PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gsam_repro.report.figures import COLORS, paper_style

    xs = np.linspace(*FRAME_X, 321)
    ys = np.linspace(*FRAME_Y, 257)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), axis=-1), dtype=torch.float64)
    values = loss(grid).numpy()
    points = minima()
    with paper_style():
        fig, ax = plt.subplots(figsize=(3.4, 2.6))
        levels = np.quantile(values, np.linspace(0.0, 1.0, 24) ** 2)
        ax.contourf(xs, ys, values, levels=np.unique(levels), cmap="Greys_r", alpha=0.35)
        ax.contour(xs, ys, values, levels=np.unique(levels), colors="0.45", linewidths=0.3)
        for r in results:
            ax.plot(r.path[:, 0], r.path[:, 1], "-o", ms=1.6, lw=0.9,
                    color=COLORS.get(r.optimizer, "C0"), label=f"{r.optimizer.upper()} ({r.basin})")
        ax.plot(*START, marker="*", color="black", ms=7, ls="none", label="start")
        for name, point in points.items():
            ax.annotate(
                f"{name}\n$\\lambda_{{max}}$={max_eigenvalue(point):.1f}",
                xy=point, xytext=(point[0], point[1] - 0.5), ha="center", fontsize=6.5,
                arrowprops={"arrowstyle": "-", "lw": 0.5},
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.set_xlabel("$w_1$")
        ax.set_ylabel("$w_2$")
        ax.set_ylim(*FRAME_Y)
        ax.set_title("Illustrative 2-D loss (ours, not the paper's)", fontsize=7.5)
        ax.legend(loc="upper left", fontsize=6, framealpha=0.85)
        fig.tight_layout()
        written = save_figure(fig, out_dir, "toy_trajectories")
        plt.close(fig)
    return written


# Basin-map colours, apart in grey scale too: flat light, sharp dark, neither in between.
CLASS_COLORS = {"flat": "#F2F2F2", "sharp": "#3A3A3A", "neither": "#A6A6A6"}


def plot_basins(basins: BasinMap, out_dir: Path) -> list[Path]:
    """One panel per optimizer: each start of the grid coloured by where that optimizer ends,
    with the trajectories' start marked; as PNG and PDF (toy_basins.*)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from gsam_repro.report.figures import paper_style

    shares = basins.shares()
    cmap = ListedColormap([CLASS_COLORS[c] for c in CLASSES])
    dx, dy = basins.xs[1] - basins.xs[0], basins.ys[1] - basins.ys[0]
    extent = (basins.xs[0] - dx / 2, basins.xs[-1] + dx / 2,
              basins.ys[0] - dy / 2, basins.ys[-1] + dy / 2)
    with paper_style():
        fig, axes = plt.subplots(1, len(OPTIMIZERS), figsize=(7.0, 2.5), sharey=True)
        for ax, name in zip(axes, OPTIMIZERS, strict=True):
            codes = np.vectorize(CLASSES.index)(basins.classes[name])
            ax.imshow(codes, origin="lower", extent=extent, cmap=cmap, vmin=-0.5,
                      vmax=len(CLASSES) - 0.5, aspect="auto", interpolation="nearest")
            for point in minima().values():
                ax.plot(*point, marker="x", color="#C44E52", ms=4, ls="none")
            ax.plot(*START, marker="*", color="#C44E52", ms=6, ls="none")
            ax.set_title(f"{name.upper()}: ends flat from {100 * shares[f'{name}_flat']:.1f} %",
                         fontsize=7.5)
            ax.set_xlabel("start $w_1$")
        axes[0].set_ylabel("start $w_2$")
        fig.legend(handles=[Patch(facecolor=CLASS_COLORS[c], edgecolor="0.3", label=c)
                            for c in CLASSES], loc="lower center", ncol=3, fontsize=6.5)
        fig.suptitle(f"Where each optimizer ends ({basins.steps} steps, lr {LR}, $\\rho$ {RHO}, "
                     f"$\\alpha$ {ALPHA}); GSAM flat while SAM sharp: "
                     f"{100 * shares['gsam_flat_sam_sharp']:.1f} % of starts",
                     fontsize=7.5)
        fig.tight_layout(rect=(0, 0.08, 1, 0.95))
        written = save_figure(fig, out_dir, "toy_basins")
        plt.close(fig)
    return written


def write_outputs(results: list[ToyResult], out_dir: str | Path,
                  basins: BasinMap | None = None) -> list[Path]:
    """Write the figures, the Markdown table and CSVs into out_dir (atomically, file by file);
    with `basins`, also the basin map and its shares (toy_basins.*)."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = plot(results, out)
    shape = (len(basins.xs), len(basins.ys)) if basins is not None else None
    if basins is not None:
        written += plot_basins(basins, out)
        path = out / "toy_basins.csv"
        atomic_write_text(path, "share,value\n" + "".join(
            f"{k},{v:.6f}\n" for k, v in basins.shares().items()))
        written.append(path)
    md = out / "toy_table.md"
    atomic_write_text(md, "Illustrative 2-D loss (ours, not the paper's function); start "
                      f"{START}, lr {LR}, rho {RHO}, GSAM alpha {ALPHA}, {STEPS} steps.\n\n"
                      + markdown_table(results)
                      + (f"\nBasin map: {shares_text(basins.shares(), shape)}\n"
                         if basins is not None else ""))
    written.append(md)
    rows = table_rows(results)
    path = out / "toy_table.csv"
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written.append(path)
    return written
