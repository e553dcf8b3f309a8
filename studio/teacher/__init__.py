"""The first method: a text-to-image latent diffusion teacher trained with the SD objective."""

from studio.teacher.config import TeacherConfig
from studio.teacher.run import train_teacher

__all__ = ["TeacherConfig", "train_teacher"]
