"""The toy example: from the documented start, SGD and SAM end in the sharp basin and GSAM in
the flat one, with the package's real optimizers; the table's numbers check out."""

import numpy as np
import pytest
import torch

from gsam_repro import toy


@pytest.fixture(scope="module")
def results():
    torch.set_num_threads(1)
    return {r.optimizer: r for r in toy.run_all()}


def test_minima_are_a_sharp_and_a_flat_one():
    points = toy.minima()
    for point in points.values():
        assert np.abs(toy.gradient(point)).max() < 1e-9
        assert np.linalg.eigvalsh(toy.hessian(point)).min() > 0  # minima, not saddles
    assert toy.max_eigenvalue(points["sharp"]) > 4 * toy.max_eigenvalue(points["flat"])


def test_sgd_and_sam_end_sharp_gsam_flat(results):
    points = toy.minima()
    assert results["sgd"].basin == "sharp"
    assert results["sam"].basin == "sharp"
    assert results["gsam"].basin == "flat"
    # SGD converges to the sharp minimum itself; GSAM close to the flat one
    assert np.linalg.norm(results["sgd"].end - points["sharp"]) < 1e-3
    assert np.linalg.norm(results["gsam"].end - points["flat"]) < 0.05
    # SAM hovers within rho of the sharp minimum
    assert np.linalg.norm(results["sam"].end - points["sharp"]) < 1.5 * toy.RHO


def test_same_start_lr_and_rho_and_real_optimizers(results):
    for r in results.values():
        assert tuple(r.path[0]) == toy.START
        assert len(r.path) == toy.STEPS + 1
    # alpha = 0 turns GSAM into SAM exactly: the runs use the package's own GSAM
    same = toy.trajectory("gsam", alpha=0.0, steps=30)
    assert np.allclose(same, toy.trajectory("sam", steps=30), atol=1e-12)


def test_hessian_and_surrogate_gap_against_finite_differences(results):
    end = results["gsam"].end
    step = 1e-4
    numeric = np.zeros((2, 2))
    for i in range(2):
        shift = np.eye(2)[i] * step
        numeric[:, i] = (toy.gradient(end + shift) - toy.gradient(end - shift)) / (2 * step)
    assert np.allclose(toy.hessian(end), numeric, atol=1e-6)
    # at a minimum the worst-case gap over the rho-circle is about rho^2 lambda_max / 2
    for name in ("sgd", "gsam"):
        r = results[name]
        assert r.surrogate_gap == pytest.approx(toy.RHO**2 * r.hessian_max_eig / 2, rel=0.3)
    assert results["gsam"].surrogate_gap < results["sgd"].surrogate_gap / 3


def test_command_writes_figure_and_table(tmp_path, capsys):
    from gsam_repro.cli import main

    assert main(["toy", "--out", str(tmp_path), "--steps", "60"]) == 0
    assert "| GSAM |" in capsys.readouterr().out
    assert (tmp_path / "toy_trajectories.png").stat().st_size > 20_000
    assert (tmp_path / "toy_trajectories.pdf").stat().st_size > 5_000
    assert (tmp_path / "toy_table.csv").read_text().count("\n") == 4
    assert (tmp_path / "toy_basins.png").stat().st_size > 20_000


@pytest.fixture(scope="module")
def basins():
    torch.set_num_threads(1)
    return toy.basin_map()


def _grid_index(basins, start):
    return (int(np.argmin(np.abs(basins.ys - start[1]))),
            int(np.argmin(np.abs(basins.xs - start[0]))))


def test_basin_map_classes_equal_runs_of_the_real_optimizers(basins, results):
    """The map applies the update rules to all starts at once; from single starts, the
    package's optimizers (create_optimizer) end in the same class."""
    row, col = _grid_index(basins, toy.START)
    assert (basins.xs[col], basins.ys[row]) == pytest.approx(toy.START)
    for name in toy.OPTIMIZERS:  # the documented start: sharp, sharp, flat
        assert basins.classes[name][row, col] == toy.classify(results[name].end)[0]
    assert [basins.classes[n][row, col] for n in toy.OPTIMIZERS] == ["sharp", "sharp", "flat"]
    for start, name, expected in (((-1.0, 1.0), "gsam", "flat"), ((1.0, 0.0), "sam", "sharp")):
        row, col = _grid_index(basins, start)
        end = toy.trajectory(name, start=(basins.xs[col], basins.ys[row]))[-1]
        assert toy.classify(end)[0] == basins.classes[name][row, col] == expected
        assert np.allclose(end, toy.final_points(name, np.array([start]))[0], atol=1e-9)


def test_classify_by_distance_to_the_minima():
    points = toy.minima()
    ends = np.array([points["flat"] + [0, 0.29], points["sharp"] + [0.2, 0.2],
                     [0.0, 0.0], [np.nan, 0.0]])
    assert list(toy.classify(ends)) == ["flat", "sharp", "neither", "neither"]


def test_documented_shares_are_what_the_map_measures(basins):
    from pathlib import Path

    # shares counted here, cell by cell, not by BasinMap.shares
    cells = basins.classes["gsam"].size
    both = sum(g == "flat" and s == "sharp" for g, s in
               zip(basins.classes["gsam"].ravel(), basins.classes["sam"].ravel(), strict=True))
    shares = basins.shares()
    assert shares["gsam_flat_sam_sharp"] == both / cells
    for name in toy.OPTIMIZERS:
        assert shares[f"{name}_flat"] == list(basins.classes[name].ravel()).count("flat") / cells
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs/reports.md").read_text().split())
    assert toy.shares_text(shares) in docs


def test_figures_and_files_carry_the_map_shares(tmp_path, results):
    small = toy.basin_map(shape=(5, 4), steps=60)
    written = toy.write_outputs(list(results.values()), tmp_path, small)
    assert tmp_path / "toy_basins.png" in written
    assert (tmp_path / "toy_basins.pdf").stat().st_size > 5_000
    rows = dict(line.split(",") for line in
                (tmp_path / "toy_basins.csv").read_text().splitlines()[1:])
    assert {k: float(v) for k, v in rows.items()} == pytest.approx(small.shares(), abs=1e-6)
    assert toy.shares_text(small.shares(), (5, 4)) in (tmp_path / "toy_table.md").read_text()


@pytest.mark.parametrize("start", [(0.5, 1.0), (-0.4, 0.3), (1.3, -0.2)])
def test_gsam_is_sam_plus_alpha_times_the_sideways_gradient_of_h(start):
    """The docs' reason the effect is narrow: to first order in rho, GSAM's step differs from
    SAM's by alpha times the part of grad(rho ||g||) = rho H g/||g|| orthogonal to g_p."""
    rho, alpha, lr = 1e-3, 1.0, 1e-3
    w = np.array(start)
    steps = {name: (w - toy.trajectory(name, start=start, steps=1, lr=lr, rho=rho,
                                       alpha=alpha)[-1]) / lr for name in ("sam", "gsam")}
    g = toy.gradient(w)
    grad_h = rho * toy.hessian(w) @ g / np.linalg.norm(g)  # independent: autograd Hessian
    g_p = toy.gradient(w + rho * g / np.linalg.norm(g))
    unit = g_p / np.linalg.norm(g_p)
    sideways = grad_h - (grad_h @ unit) * unit
    difference = steps["gsam"] - steps["sam"]
    assert np.linalg.norm(difference - alpha * sideways) < 0.02 * np.linalg.norm(sideways)
