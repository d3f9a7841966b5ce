"""pointformer: 3D point-cloud instance segmentation on sparse convolutions, trained with the Influencer Loss."""

__version__ = "0.1.0"
