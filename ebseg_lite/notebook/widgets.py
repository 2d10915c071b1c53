"""The balancing explorer as ipywidgets: a thin wrapper over :mod:`ebseg_lite.notebook.explore`.

    enc = [model.encode(img) for img in images]          # the only encoder calls
    ui = BalancingExplorer(model, enc, class_names)
    ui                                                    # in a notebook: sliders, toggle, text box, picker
    ui.sliders["seen", "B"].value = 0.3                   # or drive it from code ...
    ui.set_weights(w_new=(0, 1, 0))                       # (several sliders, one re-classification)
    ui.result.prediction.labels                           # ... and read the last result

Every control calls :func:`~ebseg_lite.notebook.explore.explore` on the already encoded image (encode once,
classify many: no encoder runs after construction) and stores what it returned on ``.result`` (and an
error message for a bad vocabulary on ``.error``), so code and tests assert on the function's result,
never on the ``Output`` widget (empty without a frontend). Needs ``ipywidgets`` (``pip install
ebseg-lite[dev]``).
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence

from ebseg_lite.notebook.explore import BRANCHES, ExploreResult, explore, explorer_figure, parse_vocabulary
from ebseg_lite.inference.outputs import Encoded


class BalancingExplorer:
    """Sliders for the weights of A, B and D on seen and new classes (geometric, official form) and for
    a, b, g (arithmetic, paper form), a toggle between the two forms, a vocabulary box with an "apply"
    button, an image picker, a pixel to explain, and a "reset weights" button.

    Args:
        model: an EBSeg (only ``classify`` is called).
        encoded_list: ``model.encode(image)`` for every image the picker offers.
        class_names: the starting vocabulary.
        image_names: picker labels (default "image 0", "image 1", ...).
        seen: (K,) bool fixed for the starting vocabulary, or None for the synonym rule (always used
            after the vocabulary changes).
        render: draw the figure into ``.out`` on every change (False: compute only, e.g. in tests).
    """

    def __init__(self, model, encoded_list: Sequence[Encoded], class_names: Sequence[str], *,
                 image_names: Optional[Sequence[str]] = None, seen=None, render: bool = True):
        import ipywidgets as W
        self.model = model
        self.encoded: List[Encoded] = list(encoded_list)
        if not self.encoded:
            raise ValueError("BalancingExplorer needs at least one encoded image: [model.encode(img), ...]")
        self.class_names = parse_vocabulary(class_names)
        self._seen = seen
        self.render_enabled = render
        self.result: Optional[ExploreResult] = None
        self.error: Optional[str] = None
        self.updates = 0          # how many times explore() ran
        self._hold = False
        inf = model.cfg.inference
        self.defaults = {"w_seen": tuple(inf.w_seen), "w_new": tuple(inf.w_new), "paper_abg": tuple(inf.paper_abg),
                         "balancing": inf.balancing}
        # a fixed width with room for the two-decimal readout (narrow columns cut "0.21" to "0.2")
        slider = lambda desc, v: W.FloatSlider(value=float(v), min=0.0, max=1.0, step=0.01, description=desc,
                                               continuous_update=False, readout_format=".2f",
                                               layout=W.Layout(width="330px"), style={"description_width": "70px"})
        self.sliders = {(group, b): slider(f"{group} {b}", self.defaults[f"w_{group}"][i])
                        for group in ("seen", "new") for i, b in enumerate(BRANCHES)}
        self.abg = {n: slider(n, v) for n, v in zip("abg", self.defaults["paper_abg"])}
        forms = [("geometric (official)", "official"), ("arithmetic (paper)", "paper")]
        self.balancing = W.ToggleButtons(options=forms, value=self.defaults["balancing"], description="balancing")
        self.vocabulary = W.Textarea(value="\n".join(self.class_names), description="classes",
                                     placeholder="one class per line; 'road, route' = synonyms",
                                     layout=W.Layout(width="320px", height="140px"))
        self.apply_button = W.Button(description="apply vocabulary", button_style="primary")
        self.reset_button = W.Button(description="reset weights")
        names = list(image_names) if image_names is not None else [f"image {i}" for i in range(len(self.encoded))]
        if len(names) != len(self.encoded):
            raise ValueError(f"{len(names)} image names for {len(self.encoded)} encoded images")
        self.image = W.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="image")
        self.pixel_y = W.IntSlider(description="pixel y", continuous_update=False)
        self.pixel_x = W.IntSlider(description="pixel x", continuous_update=False)
        self.message = W.HTML()
        self.out = W.Output()
        self._fit_pixel()

        for w in list(self.sliders.values()) + list(self.abg.values()) + [self.balancing, self.pixel_y, self.pixel_x]:
            w.observe(self.update, names="value")
        self.image.observe(self._on_image, names="value")
        self.apply_button.on_click(self.apply_vocabulary)
        self.reset_button.on_click(self.reset_weights)

        col = lambda title, ws: W.VBox([W.HTML(f"<b>{title}</b>")] + list(ws))
        self.ui = W.VBox([
            W.HBox([self.image, self.balancing]),
            W.HBox([col("geometric: seen classes", [self.sliders["seen", b] for b in BRANCHES]),
                    col("geometric: new classes", [self.sliders["new", b] for b in BRANCHES]),
                    col("arithmetic: E_seen = aA+bB+(1-a-b)D, E_new = gA+bB+(1-g-b)D", self.abg.values())]),
            W.HBox([W.VBox([self.vocabulary, W.HBox([self.apply_button, self.reset_button])]),
                    W.VBox([self.pixel_y, self.pixel_x, self.message])]),
            self.out])
        self.update()

    # ------------------------------------------------------------------ state
    @contextlib.contextmanager
    def _holding(self):
        """Change several controls without re-classifying after each."""
        self._hold, old = True, self._hold
        try:
            yield
        finally:
            self._hold = old

    def _fit_pixel(self):
        h, w = self.encoded[self.image.value].orig_size
        with self._holding():
            self.pixel_y.max, self.pixel_x.max = h - 1, w - 1
            self.pixel_y.value, self.pixel_x.value = h // 2, w // 2

    def settings(self) -> dict:
        """The keyword arguments the controls currently stand for (what :func:`explore` receives)."""
        return {"w_seen": tuple(self.sliders["seen", b].value for b in BRANCHES),
                "w_new": tuple(self.sliders["new", b].value for b in BRANCHES),
                "paper_abg": tuple(self.abg[n].value for n in "abg"),
                "balancing": self.balancing.value,
                "pixel": (self.pixel_y.value, self.pixel_x.value)}

    def set_weights(self, *, w_seen: Optional[Sequence[float]] = None, w_new: Optional[Sequence[float]] = None,
                    paper_abg: Optional[Sequence[float]] = None, balancing: Optional[str] = None):
        """Move several sliders (and the toggle) at once and re-classify once; returns ``.result``."""
        with self._holding():
            for group, wts in (("seen", w_seen), ("new", w_new)):
                if wts is not None:
                    for b, v in zip(BRANCHES, wts):
                        self.sliders[group, b].value = float(v)
            if paper_abg is not None:
                for n, v in zip("abg", paper_abg):
                    self.abg[n].value = float(v)
            if balancing is not None:
                self.balancing.value = balancing
        return self.update()

    # ------------------------------------------------------------------ callbacks
    def update(self, *_):
        """Re-classify the picked image with the current controls; store ``.result`` (and render)."""
        if self._hold:
            return self.result
        official = self.balancing.value == "official"
        for s in self.sliders.values():
            s.disabled = not official
        for s in self.abg.values():
            s.disabled = official
        try:
            self.result = explore(self.model, self.encoded[self.image.value], self.class_names, seen=self._seen,
                                  **self.settings())
            self.error = None
        except ValueError as e:
            self.error = str(e)
        self.updates += 1
        self._show_message()
        if self.render_enabled:
            self.render()
        return self.result

    def _on_image(self, *_):
        self._fit_pixel()
        self.update()

    def apply_vocabulary(self, *_):
        """Parse the text box; on success re-classify with the new vocabulary (seen/new by the synonym
        rule), else keep the previous vocabulary and result and set ``.error``."""
        try:
            names = parse_vocabulary(self.vocabulary.value)
        except ValueError as e:
            self.error = f"vocabulary not applied: {e}"
            self._show_message()
            return self.result
        self.class_names, self._seen = names, None
        return self.update()

    def reset_weights(self, *_):
        """Back to the model's default weights and balancing form."""
        d = self.defaults
        return self.set_weights(w_seen=d["w_seen"], w_new=d["w_new"], paper_abg=d["paper_abg"],
                                balancing=d["balancing"])

    # ------------------------------------------------------------------ display
    def _show_message(self):
        import html
        lines = [f"<span style='color:#b00'>{html.escape(self.error)}</span>"] if self.error else []
        if self.result is not None:
            lines += [f"<span style='color:#a60'>{html.escape(w)}</span>" for w in self.result.warnings]
            n_seen = sum(self.result.seen)
            lines.append(f"{len(self.result.class_names)} classes ({n_seen} seen, "
                         f"{len(self.result.class_names) - n_seen} new); query {self.result.query} explains the pixel")
        self.message.value = "<br>".join(lines)

    def render(self):
        """Draw the last result into ``.out`` (the figure of :func:`explorer_figure`)."""
        if self.result is None:
            return
        from IPython.display import clear_output, display
        fig = explorer_figure(self.result)
        with self.out:
            clear_output(wait=True)
            display(fig)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.ui)
