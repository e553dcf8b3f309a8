"""FID that works offline and agrees with the reference implementations (issue 3, in progress)."""
