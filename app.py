"""STARCaster demo: talking portraits, ID-driven generation and free-viewpoint orbits (Gradio 6).

    python app.py [--model tiny|sd15|path/to/checkpoint] [--host 0.0.0.0] [--port 7860]

The pipeline is loaded once at start-up and shared by every visitor; the UI itself lives in ``ui/``.
"""

from __future__ import annotations

import argparse
import os

from ui.model import MODEL_ENV  # noqa: F401  (imports ``spaces`` first when present: it must precede CUDA)

import gradio as gr  # noqa: E402

from ui import camera_editor, capabilities, identity_tab, orbit_tab, portrait_tab, torch_thread  # noqa: E402
from ui.errors import MAX_UPLOAD_SIZE  # noqa: E402
from ui.example_cache import CACHE_ROOT  # noqa: E402
from ui.inputs import operator_max_seconds  # noqa: E402
from ui.model import MODEL_CONCURRENCY_ID, get_pipeline, model_name, on_gpu  # noqa: E402
from ui.queue_eta import position_only  # noqa: E402
from ui.streaming import OUTPUT_ROOT  # noqa: E402

TITLE = "STARCaster: talking portraits from any viewpoint"
INTRO = (
    "Animate a portrait with speech, generate a new talking video of a person's identity, or fly a camera around a "
    "talking head. Each finished segment streams to the player as soon as it is ready."
)


def build_demo() -> gr.Blocks:
    if camera_editor.PLOTLY_JS:
        gr.set_static_paths([camera_editor.PLOTLY_JS])  # Plotly is served from the pip package, never a CDN
    with gr.Blocks(title="STARCaster", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}\n\nModel: `{model_name()}`")
        capabilities.page_notice()  # what this model cannot do, before anyone tries
        with gr.Tabs():
            with gr.Tab("Portrait animation", id="portrait"):
                portrait_tab.build()
            with gr.Tab("ID-driven generation", id="identity"):
                identity_tab.build()
            with gr.Tab("Free-viewpoint orbit", id="orbit"):
                orbit_tab.build()
    demo.queue(max_size=16, default_concurrency_limit=4)
    position_only(demo, MODEL_CONCURRENCY_ID)  # Gradio's average-based ETA is wrong for jobs of different lengths
    return demo


def launch(host: str = "127.0.0.1", port: int | None = None, *, block: bool = True) -> gr.Blocks:
    """Load the pipeline, build the demo and serve it; ``block=False`` returns at once (tests, notebooks)."""
    operator_max_seconds()  # a bad STARCASTER_MAX_SECONDS stops here, with its name, not in every request
    sample_here = block and not on_gpu()
    if sample_here:  # the main thread samples (ui/torch_thread.py says why); it loads the model too
        torch_thread.claim()
    get_pipeline()  # the expensive part, once, before the first visitor arrives
    os.makedirs(OUTPUT_ROOT, exist_ok=True)
    demo = build_demo()
    if block:  # for the operator: Gradio's own example cache is off, the app keeps the example videos here
        print(f"* Example videos are cached in {CACHE_ROOT} (each made on its first click)")
    demo.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD_SIZE, allowed_paths=[OUTPUT_ROOT],
                show_error=True, prevent_thread_lock=not block or sample_here, quiet=not block)
    if sample_here:  # Gradio serves from its own threads; this one now runs the visitors' sampling until Ctrl+C
        try:
            torch_thread.serve()
        except KeyboardInterrupt:
            print("Keyboard interruption in main thread... closing server.")
        finally:
            demo.close()
    return demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="preset (tiny, sd15) or checkpoint folder; env STARCASTER_MODEL")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    if args.model:
        os.environ[MODEL_ENV] = args.model
    try:
        launch(args.host, args.port)
    except ValueError as exc:  # the operator's settings: say which, without a traceback
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
