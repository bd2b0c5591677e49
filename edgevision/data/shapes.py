"""The shape classes of edgevision's synthetic scenes, importable without OpenCV (the model registry needs the
names at start-up; rendering them is data.synthetic's job)."""

SHAPE_CLASSES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star", "cross")
