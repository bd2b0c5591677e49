"""edgevision: take small vision models from PyTorch to edge devices, and prove they still work there.

The device-side API needs no PyTorch:

    from edgevision import Predictor, load_bundle
    dets = Predictor("bundles/fast-yolo-demo-cpu-int8").predict(image_rgb)

    p = PromptPredictor("bundles/efficient-sam-demo-cpu-int8")
    p.set_image(image_rgb)
    masks, scores = p.predict(points=[(x, y)], labels=[1])

    t = Tracker("bundles/sam-track-demo-cpu-int8")
    t.add_prompt(first_rgb, obj_id=1, box=(x0, y0, x1, y1))
    results = t.track(next_rgb)   # {obj_id: ObjectResult}

Host-side export and checks live in ``edgevision.export`` and ``edgevision.check``.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import edgevision` stays cheap on devices and never pulls PyTorch in.
    if name == "Predictor":
        from edgevision.predictor import Predictor

        return Predictor
    if name == "PromptPredictor":
        from edgevision.prompt_predictor import PromptPredictor

        return PromptPredictor
    if name == "Tracker":
        from edgevision.tracker import Tracker

        return Tracker
    if name == "load_bundle":
        from edgevision.bundle import load_bundle

        return load_bundle
    if name == "export_bundle":
        from edgevision.export import export_bundle

        return export_bundle
    raise AttributeError(name)
