"""Turning failures into messages a visitor can act on, without taking the app down.

The library raises ``ValueError`` with a sentence meant for a person (no face, silent audio, broken camera JSON...):
those are shown as they are. Anything else is a bug on our side: it is logged with its traceback and the visitor sees
a short apology instead of a stack trace. Either way the request ends cleanly and the next one works.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging

import gradio as gr

logger = logging.getLogger("starcaster.ui")

# Uploads beyond this are refused by Gradio before they reach a handler.
MAX_UPLOAD_SIZE = "25mb"


def to_gr_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, ValueError):
        # The modal renders HTML: escape <, > and &, but not quotes (the API would show them as &#x27;).
        return gr.Error(html.escape(str(exc), quote=False), title="Please check the input", print_exception=False)
    logger.exception("Unexpected error in the demo", exc_info=exc)
    return gr.Error(html.escape(f"Something went wrong on our side ({type(exc).__name__}: {exc}). Please try again.",
                                quote=False))


def user_errors(fn):
    """Decorate a Gradio handler (function or generator) so every failure becomes a ``gr.Error``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except GeneratorExit:
                raise
            except Exception as exc:  # noqa: BLE001  (the whole point: nothing escapes as a crash)
                raise to_gr_error(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise to_gr_error(exc) from exc

    return wrapper
