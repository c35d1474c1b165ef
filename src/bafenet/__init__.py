"""bafenet: clustered infrared small target detection with background semantics."""

__version__ = "0.1.0"
