"""The shared data layer: Fashion-MNIST IDX files, image folders, prompt files."""

from studio.data.captioned import CaptionedImages
from studio.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from studio.data.imagefolder import load_image_folder
from studio.data.prompts import class_prompts, read_prompt_file
from studio.data.registry import load_dataset

__all__ = [
    "CaptionedImages",
    "FASHION_MNIST_CLASSES",
    "class_prompts",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "read_prompt_file",
]
