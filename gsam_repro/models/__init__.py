"""Models: any timm model by name plus CIFAR nets (resnet18_cifar, wrn16_8, wrn28_10, small_cnn)."""
