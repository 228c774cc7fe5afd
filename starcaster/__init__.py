"""STARCaster: identity- and view-aware spatio-temporal autoregressive video diffusion for talking portraits.

    from starcaster import load_pipeline, CameraPath
    pipe = load_pipeline("tiny")
    for segment in pipe.stream(task="portrait", image="face.png", audio="speech.wav"):
        ...
"""

__version__ = "0.1.0"

__all__ = ["load_pipeline", "save_pipeline", "CameraPath", "STARCasterPipeline", "Segment", "Video"]


def __getattr__(name):
    # Lazy: `import starcaster` stays cheap (no torch/diffusers import) for tools that only need CameraPath.
    if name in ("load_pipeline", "save_pipeline"):
        from . import loading

        return getattr(loading, name)
    if name == "CameraPath":
        from .conditioning.camera import CameraPath

        return CameraPath
    if name in ("STARCasterPipeline", "Segment", "Video"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'starcaster' has no attribute {name!r}")
