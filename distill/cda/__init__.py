"""Curriculum dataset distillation (CDA, Yin & Shen 2023, on SRe2L, Yin et al. 2023).

squeeze (train a teacher classifier) -> recover (synthesise images from the teacher's
BatchNorm statistics, with a curriculum on the random-resized-crop scale) -> eval
(train a student from scratch on the distilled set with the live teacher's soft labels).
"""
