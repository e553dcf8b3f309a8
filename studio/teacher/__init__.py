"""The built-in text-to-image latent diffusion teacher, trained with the SD objective; a method like the others."""

from studio.teacher.commands import train_teacher
from studio.teacher.config import TeacherConfig

__all__ = ["TeacherConfig", "train_teacher"]
