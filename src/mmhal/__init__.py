"""mmhal: privileged modality learning via multimodal hallucination (MMH)."""

__version__ = "0.1.0"
