"""The camera-path editor: presets, a keyframe table, a live Plotly figure with draggable keyframes, JSON in and out.

``gr.Plot`` cannot send events back to Python, so the figure lives in a ``gr.HTML`` whose ``js_on_load`` draws it with
Plotly (served from the pip ``plotly`` package, never a CDN) and reports keyframe drags as a ``keyframe_drag`` event.
The path itself is the JSON text in ``editor.json``: that is what the orbit tab hands to the pipeline.
"""

from __future__ import annotations

import itertools
import json
import os

import gradio as gr

from . import camera_keyframes as ck
from .camera_plot import PLOT_MARGIN, VIEW_3D, VIEW_TOP, figure_json
from .errors import user_errors
from .streaming import new_output_dir

try:
    import plotly

    PLOTLY_JS = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
except ImportError:  # the editor then shows a note instead of a figure
    PLOTLY_JS = None

# Static files are served at gradio_api/file=<absolute path> once registered with gr.set_static_paths.
PLOTLY_HEAD = f'<script src="gradio_api/file={PLOTLY_JS}"></script>' if PLOTLY_JS else None

# Each view's title is a heading over its own part of the figure, so the two never run together (as Plotly annotations
# they did: "3D viewtop view: ...", overlapping on narrow screens); the longer one wraps instead.
PLOT_TEMPLATE = (
    '<div class="sc-cam">'
    '<div class="sc-cam-titles"><h4 class="sc-cam-title">3D view</h4>'
    '<h4 class="sc-cam-title">Top view: drag the numbered keyframes</h4></div>'
    '<div class="sc-cam-plot" data-revision="-1"></div>'
    '</div>'
)
PLOT_CSS = f"""
.sc-cam-plot {{ width: 100%; min-height: 420px; }}
.sc-cam-titles {{ display: flex; justify-content: space-between; margin: 0 {PLOT_MARGIN}px; }}
.sc-cam-title {{ margin: 0; font-size: 0.95em; font-weight: 600; text-align: center; line-height: 1.3; }}
.sc-cam-title:first-child {{ flex: 0 0 {100 * (VIEW_3D[1] - VIEW_3D[0]):g}%; }}
.sc-cam-title:last-child {{ flex: 0 0 {100 * (VIEW_TOP[1] - VIEW_TOP[0]):g}%; }}
"""

# Runs once in the browser when the component mounts. ``props.value`` is the figure JSON sent by Python.
PLOT_JS = r"""
const root = element.querySelector('.sc-cam-plot');
const config = {responsive: true, displaylogo: false, edits: {shapePosition: true},
                modeBarButtonsToRemove: ['select2d', 'lasso2d', 'toImage']};
let dragging = false;
function draw() {
  if (!window.Plotly) { root.textContent = 'Plotly did not load: the camera figure is unavailable.'; return; }
  if (!props.value) return;
  const fig = JSON.parse(props.value);
  window.Plotly.react(root, fig.data, fig.layout, config).then(() => {
    root.dataset.revision = String(fig.layout.meta.revision);
    root.dataset.numFrames = String(fig.layout.meta.num_frames);
    if (!root.dataset.listening) {
      root.dataset.listening = '1';
      // A dragged keyframe circle arrives as shapes[i].x0/x1/y0/y1: report its centre in world (x, z).
      root.on('plotly_relayout', (ev) => {
        for (const key of Object.keys(ev)) {
          const m = key.match(/^shapes\[(\d+)\]\.x0$/);
          if (!m) continue;
          const i = Number(m[1]);
          const s = `shapes[${i}].`;
          const x = (ev[s + 'x0'] + ev[s + 'x1']) / 2, z = (ev[s + 'y0'] + ev[s + 'y1']) / 2;
          trigger('keyframe_drag', {index: i, x: x, z: z});
        }
      });
    }
  });
}
draw();
watch('value', draw);
"""

_revisions = itertools.count(1)  # lets the browser (and the tests) tell a redrawn figure from the old one


def _fig(path, keyframes) -> str:
    return figure_json(path, keyframes, next(_revisions))


def _outputs_for(path):
    """(json text, table rows, figure) for a path."""
    keyframes = ck.keyframes_of(path)
    return path.to_json(), ck.keyframes_to_rows(keyframes), _fig(path, keyframes)


def initial_state(num_frames: int):
    return _outputs_for(ck.preset_path(ck.DEFAULT_PRESET, num_frames))


@user_errors
def on_preset(preset, seconds, seed):
    return _outputs_for(ck.preset_path(preset, round(float(seconds) * ck.EDITOR_FPS), seed=seed or 0))


@user_errors
def on_length(text, seconds):
    path = ck.path_from_json(text).resample(max(2, round(float(seconds) * ck.EDITOR_FPS)))
    return _outputs_for(path)


@user_errors
def on_table(rows, text):
    num_frames = len(ck.path_from_json(text))
    path = ck.path_from_rows(rows, num_frames)
    return path.to_json(), _fig(path, path.keyframes)


@user_errors
def on_drag(rows, text, evt: gr.EventData):
    data = getattr(evt, "_data", None) or {}
    try:
        index, x, z = int(data["index"]), float(data["x"]), float(data["z"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("The dragged keyframe could not be read; edit it in the table instead.") from None
    rows = ck.move_keyframe(rows, index, x, z)
    path = ck.path_from_rows(rows, len(ck.path_from_json(text)))
    return path.to_json(), rows, _fig(path, path.keyframes)


@user_errors
def on_json(text):
    return _outputs_for(ck.path_from_json(text))


@user_errors
def on_import(file):
    if file is None:
        raise ValueError("No file was uploaded.")
    try:
        with open(file, "rb") as f:
            text = f.read(5_000_000).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("The camera file is not UTF-8 text: export a path from this editor to see the format.") from None
    return _outputs_for(ck.path_from_json(text))


def export_file(text):
    """Write the current path to a file for the download button (nothing when the JSON is broken)."""
    try:
        path = ck.path_from_json(text)
    except ValueError:
        return gr.skip()
    out = os.path.join(new_output_dir(), "camera_path.json")
    with open(out, "w") as f:
        f.write(json.dumps(json.loads(path.to_json()), indent=1))
    return out


class CameraEditor:
    """Builds the editor inside the current Blocks context; ``json`` is the path text the pipeline reads.

    One full-width row: the figure (its two views need the width) beside the presets, the keyframe table and the
    JSON import/export."""

    def __init__(self, seconds: gr.Slider):
        json_text, rows, fig = initial_state(round(float(seconds.value) * ck.EDITOR_FPS))
        gr.Markdown("### Camera path", elem_id="camera-editor-title")
        with gr.Row():
            with gr.Column(scale=3, min_width=420):
                self.plot = gr.HTML(fig, html_template=PLOT_TEMPLATE, css_template=PLOT_CSS, js_on_load=PLOT_JS,
                                    head=PLOTLY_HEAD, elem_id="camera-plot", min_height=420)
            with gr.Column(scale=2, min_width=320):
                with gr.Row():
                    self.preset = gr.Dropdown(ck.PRESETS, value=ck.DEFAULT_PRESET, label="Camera preset",
                                              elem_id="camera-preset",
                                              info="oscillation = the paper's smooth 140 x 70 degree trajectories")
                    self.seed = gr.Number(0, precision=0, label="Oscillation seed", minimum=0)
                gr.Markdown(ck.INPUT_VIEW_NOTE, elem_id="camera-input-view")
                self.table = gr.Dataframe(rows, headers=ck.KEYFRAME_COLUMNS, datatype="number", type="array",
                                          column_count=len(ck.KEYFRAME_COLUMNS), interactive=True,
                                          elem_id="camera-keyframes",
                                          label="Keyframes (degrees; distance in head units, 2.7 = default)")
                with gr.Accordion("Camera path JSON (import / export)", open=False):
                    self.json = gr.Code(json_text, language="json", label="Camera path JSON", elem_id="camera-json",
                                        max_lines=12)
                    with gr.Row():
                        self.apply = gr.Button("Apply JSON", size="sm")
                        self.upload = gr.UploadButton("Import JSON file", file_types=[".json"], size="sm")
                        self.download = gr.DownloadButton("Export JSON", value=export_file(json_text), size="sm")

        outs = [self.json, self.table, self.plot]
        self.preset.input(on_preset, [self.preset, seconds, self.seed], outs, api_visibility="undocumented")
        self.seed.submit(on_preset, [self.preset, seconds, self.seed], outs, api_visibility="undocumented")
        seconds.release(on_length, [self.json, seconds], outs, api_visibility="undocumented")
        self.table.input(on_table, [self.table, self.json], [self.json, self.plot], api_visibility="undocumented")
        self.plot.keyframe_drag(on_drag, [self.table, self.json], outs, api_visibility="undocumented")
        self.apply.click(on_json, self.json, outs, api_visibility="undocumented")
        self.upload.upload(on_import, self.upload, outs, api_visibility="undocumented")
        self.json.change(export_file, self.json, self.download, api_visibility="undocumented")
