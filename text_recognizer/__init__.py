"""text-recognizer: learns to read handwriting from EMNIST glyphs and synthetic EMNISTLines."""

__version__ = "0.1.0"
