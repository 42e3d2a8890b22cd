"""How runs become report columns: the optimizer variant label."""

from gsam_repro.report.load import variant_of


def test_plain_names_bases_and_adaptive_modes():
    assert variant_of({"optimizer.name": "sgd"}) == "sgd"
    assert variant_of({"optimizer.name": "gsam", "optimizer.base": "sgd",
                       "optimizer.rho_max": 0.05}) == "gsam"
    assert variant_of({"optimizer.name": "gsam", "optimizer.base": "adamw",
                       "optimizer.rho_max": 0.6}) == "gsam-adamw"
    assert variant_of({"optimizer.name": "sam", "optimizer.rho": 2.0,
                       "optimizer.adaptive": "asam"}) == "sam(asam)"


def test_a_users_optimizer_given_by_path_reads_as_its_class_name():
    path = "experiments/custom_optimizer/random_sam.py:RandomSAM"
    assert variant_of({"optimizer.name": path, "optimizer.rho": 0.1}) == "RandomSAM"
    assert variant_of({"optimizer.name": "my_pkg.optim:SignSGD"}) == "SignSGD"
