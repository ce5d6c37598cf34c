"""The photo-like generated images of the dedup tests, for the evaluation-set tests."""

from tests.dedup.conftest import encode_image, make_jpeg, make_photo  # noqa: F401
