"""Datasets and loaders: cifar10/100, imagefolder, digits, synthetic; a GPU-resident loader."""
